//! IPv4 ranges of networks and the private addresses handed out from them.

use std::net::Ipv4Addr;

use crate::{Error, Operation, Result};

/// The shortest and longest prefixes a network may have.
const PREFIXES: std::ops::RangeInclusive<u8> = 8..=30;

/// An IPv4 range `a.b.c.d/n` whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    pub(super) network: Ipv4Addr,
    pub(super) prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` with `n` in 8..=30; `InvalidArgument` naming `cidr` otherwise.
    pub(super) fn parse(text: &str, op: Operation) -> Result<Cidr> {
        let bad = |why: String| {
            Error::invalid_argument(
                "cidr",
                format!("`{text}` is not a usable IPv4 range: {why}"),
            )
            .with_operation(op)
        };
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| bad("expected `a.b.c.d/n`, such as `10.1.0.0/24`".into()))?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad(format!("`{addr}` is not an IPv4 address")))?;
        let prefix: u8 = Some(prefix)
            .filter(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .filter(|p| PREFIXES.contains(p))
            .ok_or_else(|| {
                bad(format!(
                    "the prefix length `/{prefix}` must be a number from {} to {}",
                    PREFIXES.start(),
                    PREFIXES.end()
                ))
            })?;
        let cidr = Cidr { network, prefix };
        if u32::from(network) & !cidr.mask() != 0 {
            let base = Ipv4Addr::from(u32::from(network) & cidr.mask());
            return Err(bad(format!(
                "host bits are set; the range is `{base}/{prefix}`"
            )));
        }
        Ok(cidr)
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The addresses instances may get: all but the network address, the gateway
    /// (the first host) and the broadcast address.
    pub(super) fn pool(self) -> AddressPool {
        let base = u32::from(self.network);
        let size = 1u64 << (32 - u32::from(self.prefix));
        // size >= 4 because the prefix is at most 30.
        let last = base.saturating_add((size - 2) as u32);
        AddressPool {
            next: base.saturating_add(2),
            last,
            free: Vec::new(),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Free private addresses of a network: never handed out yet (`next..=last`), or
/// given back by purged instances (`free`).
#[derive(Debug)]
pub(super) struct AddressPool {
    next: u32,
    last: u32,
    free: Vec<u32>,
}

impl AddressPool {
    /// A free address, or `None` when the range is used up.
    pub(super) fn take(&mut self) -> Option<u32> {
        if let Some(a) = self.free.pop() {
            return Some(a);
        }
        if self.next > self.last {
            return None;
        }
        let a = self.next;
        // `last` < u32::MAX, so this cannot overflow.
        self.next += 1;
        Some(a)
    }

    /// Gives an address back.
    pub(super) fn give_back(&mut self, addr: u32) {
        self.free.push(addr);
    }
}
