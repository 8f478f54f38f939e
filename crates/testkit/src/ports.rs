//! Loopback TCP ports: picking free ones and waiting for servers to listen.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Result;

use crate::process::poll_until;

/// Ports this process has already handed out, so that two servers started
/// in parallel by one test binary never receive the same port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and closing the listener, so
/// another process can still take it before the caller binds it. Starters in
/// this crate retry with a new port when their server fails to bind. A port
/// is never returned twice within one process.
///
/// # Panics
///
/// Panics if binding `127.0.0.1:0` fails, which means there is no loopback interface.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("binding 127.0.0.1:0 failed; the loopback interface must be up");
        let port = listener
            .local_addr()
            .expect("a bound listener has a local address")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// Waits until a TCP connection to `127.0.0.1:port` succeeds.
///
/// The probe opens and closes a real connection, which some servers log as
/// a failed client. Use [`wait_for_listener`] to wait without connecting.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    poll_until(timeout, &format!("a TCP connection to {address}"), || {
        Ok(TcpStream::connect_timeout(&address, Duration::from_millis(200))
            .ok()
            .map(|_| ()))
    })
}

/// Waits until some socket listens on `port`, without connecting to it.
pub fn wait_for_listener(port: u16, timeout: Duration) -> Result<()> {
    poll_until(timeout, &format!("a listener on TCP port {port}"), || {
        Ok(is_listening(port).then_some(()))
    })
}

/// Returns true if a TCP socket listens on `port` on any local address, IPv4
/// or IPv6, as listed in `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn is_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .any(|table| std::fs::read_to_string(table).is_ok_and(|text| table_has_listener(&text, port)))
}

/// Parses a `/proc/net/tcp` table. Each row has `local_address` as
/// `HEXADDR:HEXPORT` in column 2 and the state in column 4, where `0A` is LISTEN.
fn table_has_listener(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|row| {
        let mut columns = row.split_whitespace();
        let local = columns.nth(1);
        let state = columns.nth(1);
        let local_port = local
            .and_then(|address| address.rsplit(':').next())
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        state == Some("0A") && local_port == Some(port)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const TABLE: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:84F3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1";

    #[test]
    fn listener_row_matches_port() {
        assert!(table_has_listener(TABLE, 0x84F3));
    }

    #[test]
    fn established_row_is_not_listener() {
        assert!(!table_has_listener(TABLE, 0x1F90));
    }

    #[test]
    fn free_port_never_repeats() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
    }

    #[test]
    fn wait_for_listener_sees_bound_socket() -> Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        wait_for_listener(port, Duration::from_secs(2))?;
        wait_for_port(port, Duration::from_secs(2))?;
        Ok(())
    }
}
