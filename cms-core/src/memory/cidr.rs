//! IPv4 ranges of networks and the private addresses handed out from them.

use std::net::Ipv4Addr;

use crate::{Operation, Result};

/// An IPv4 range `a.b.c.d/n` whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    pub(super) network: Ipv4Addr,
    pub(super) prefix: u8,
}

impl Cidr {
    /// Parses a range by the model's rules ([`crate::parse_cidr`]: host bits are
    /// cleared).
    pub(super) fn parse(text: &str, op: Operation) -> Result<Cidr> {
        let (network, prefix) = crate::parse_cidr(text).map_err(|e| e.with_operation(op))?;
        Ok(Cidr { network, prefix })
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
