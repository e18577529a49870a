//! Generates the gRPC code with a vendored `protoc`, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the protoc named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // R2's chunk bodies (4 MiB) travel as `Bytes`: no copy between the body and the message.
        .bytes(".nimbus.peer.v1.R2Chunk.data")
        .compile_protos(&["proto/deploy.proto", "proto/peer.proto"], &["proto"])?;
    Ok(())
}
