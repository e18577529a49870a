//! The smallest worker: answers every request with a greeting.

struct Hello;

impl nimbus::Handler for Hello {
    fn fetch(_req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
        Ok(nimbus::Response::text("Hello from Nimbus!\n"))
    }
}

nimbus::export!(Hello);
