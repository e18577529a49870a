//! Where a guest's outbound requests may go, and the connection that takes them there.
//!
//! Two checks stand before any byte leaves. The manifest's allow-list names the hosts a
//! worker may call (exactly, with its port, by `*.suffix`, or `*` for any public host). Then
//! the name is resolved here and every address is checked against [`AddressGuard`]:
//! loopback, link-local (169.254.0.0/16 and so cloud metadata), private, unique-local,
//! carrier-grade NAT, multicast, reserved ranges and the node's own addresses are refused
//! unless the operator lists them (`runtime.outbound_private_allowed`). The request is then
//! sent over a connection to the address that was checked — not to the name again, so a
//! DNS answer that changes between check and connect (rebinding) cannot slip through — with
//! TLS verified against the name (SNI and certificate) for `https`.

use http::uri::Scheme;
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// How long a name may take to resolve and a connection to open, unless the guest says less.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An address range in CIDR form (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr =
            address.trim().parse().map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("`{s}`: bad prefix length"))?
            }
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = ((prefix / 8) as usize, prefix % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0
}

/// An IPv4 address in IPv6 clothing (`::ffff:a.b.c.d`, `64:ff9b::a.b.c.d`) is judged as the
/// IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Whether `ip` is on the public internet (not loopback, private, link-local, shared,
/// multicast, documentation or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || v6 == Ipv6Addr::UNSPECIFIED)
        }
    }
}

/// Which resolved addresses outbound requests may connect to.
#[derive(Debug, Default)]
pub struct AddressGuard {
    /// Ranges the operator opened (`runtime.outbound_private_allowed`).
    allowed: Vec<Cidr>,
    /// This node's own addresses, refused even when public.
    own: Vec<IpAddr>,
}

impl AddressGuard {
    /// `allowed`: CIDR ranges or addresses the operator lets workers reach although they are
    /// not public. The node's own interface addresses are refused unless listed.
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> Result<Self, String> {
        let allowed = allowed.iter().map(|s| s.as_ref().parse()).collect::<Result<Vec<Cidr>, _>>()?;
        Ok(AddressGuard { allowed, own: own_addresses() })
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allowed.iter().any(|range| range.contains(ip)) {
            return true;
        }
        is_public(ip) && !self.own.contains(&ip)
    }
}

/// The addresses of this machine's interfaces.
fn own_addresses() -> Vec<IpAddr> {
    interface_addresses().unwrap_or_else(|e| {
        tracing::warn!("cannot list this machine's addresses; only non-public ones are refused: {e}");
        Vec::new()
    })
}

/// Interface addresses by `getifaddrs`.
#[allow(unsafe_code)]
fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free once below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` points at a sockaddr whose family says which struct it is.
            let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET sockaddr is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                found.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

type IoFuture = Box<dyn std::future::Future<Output = Result<(), Error>> + Send>;

/// Resolves the request's host, keeps the addresses `guard` permits, connects to one of
/// them and sends the request over that connection (TLS against the name for `https`).
pub async fn send_checked(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    guard: Arc<AddressGuard>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri().clone();
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let host =
        uri.host().ok_or(Error::HttpRequestUriInvalid)?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(CONNECT_TIMEOUT).min(CONNECT_TIMEOUT);
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(connect_timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(|e| Error::DnsError { rcode: Some(e.to_string()), info_code: None })?
            .collect(),
    };
    let permitted: Vec<SocketAddr> = resolved.iter().copied().filter(|a| guard.permits(a.ip())).collect();
    if permitted.is_empty() {
        tracing::warn!(%host, addresses = ?resolved, "outbound request refused: not a public address (runtime.outbound_private_allowed)");
        return Err(if resolved.is_empty() { Error::DestinationNotFound } else { Error::DestinationIpProhibited });
    }
    let mut last = Error::ConnectionRefused;
    let mut connected = None;
    for address in &permitted {
        match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                connected = Some(stream);
                break;
            }
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    let stream = connected.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    // The request line carries the path only; the host travels in the Host header.
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    if !request.headers().contains_key(http::header::HOST) {
        if let Some(authority) = uri.authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()) {
            request.headers_mut().insert(http::header::HOST, authority);
        }
    }
    if https {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.map_err(Error::Tls)?;
        exchange(tls, request, connect_timeout).await
    } else {
        exchange(stream, request, connect_timeout).await
    }
}

async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(io))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = done_tx.send(connection.await.map_err(Error::from));
    });
    let response = sender.send_request(request).await?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: IoFuture = Box::new(async move { done_rx.await.unwrap_or(Ok(())) });
    Ok((response, io))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn only_public_addresses_pass_unless_listed() {
        for refused in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip(refused)), "{refused}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip(public)), "{public}");
        }
        let guard = AddressGuard::new(&["10.0.0.0/8", "127.0.0.1"]).expect("guard");
        assert!(guard.permits(ip("10.200.0.1")) && guard.permits(ip("127.0.0.1")));
        assert!(!guard.permits(ip("127.0.0.2")) && !guard.permits(ip("169.254.169.254")));
        assert!(AddressGuard::new(&["10.0.0.0/33"]).is_err() && AddressGuard::new(&["nope"]).is_err());
        let cidr: Cidr = "172.16.0.0/12".parse().expect("cidr");
        assert!(cidr.contains(ip("172.31.255.255")) && !cidr.contains(ip("172.32.0.0")));
    }
}
