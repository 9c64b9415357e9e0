//! A URL policy for panels reachable beyond the machine: no requests into private networks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use url::{Host, Url};

/// Refuse URLs whose host is, or resolves to, an address that is not public: loopback,
/// private (RFC 1918, IPv6 unique-local), link-local (cloud metadata services live at
/// `169.254.169.254`), unspecified, shared (CGNAT), documentation, multicast or broadcast.
///
/// This guards against **server-side request forgery**: a token holder making the server
/// request its own admin interfaces or its intranet. It resolves the host name (the policy
/// runs on a blocking thread) and refuses if any address is not public. It only sees the
/// submitted URL: redirects the engine follows and a name that resolves differently later
/// (DNS rebinding) are not checked; filter egress at the network level as well.
///
/// ```
/// use actix_transfer::web::{deny_private_networks, Url, WebConfig};
/// let policy = deny_private_networks();
/// assert!(policy(&Url::parse("http://127.0.0.1:8080/x").unwrap()).is_err());
/// assert!(policy(&Url::parse("http://169.254.169.254/latest").unwrap()).is_err());
/// assert!(policy(&Url::parse("http://[::1]/").unwrap()).is_err());
/// assert!(policy(&Url::parse("http://93.184.215.14/").unwrap()).is_ok());
/// let config = WebConfig::with_token("t").url_policy(deny_private_networks());
/// ```
pub fn deny_private_networks() -> impl Fn(&Url) -> Result<(), String> + Send + Sync + 'static {
    |url: &Url| {
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<IpAddr> = match url.host() {
            None => return Err("the URL has no host".into()),
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(Host::Domain(name)) => match (name, port).to_socket_addrs() {
                Ok(it) => it.map(|a| a.ip()).collect(),
                Err(e) => return Err(format!("cannot resolve {name}: {e}")),
            },
        };
        match addrs.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(format!("{ip} is not a public address")),
            None if addrs.is_empty() => Err("the host resolves to no address".into()),
            None => Ok(()),
        }
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        let p = deny_private_networks();
        for bad in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
        ] {
            assert!(p(&Url::parse(bad).unwrap()).is_err(), "{bad} passed");
        }
        for good in ["http://93.184.215.14/", "https://[2606:4700::1111]/"] {
            assert!(p(&Url::parse(good).unwrap()).is_ok(), "{good} refused");
        }
    }
}
