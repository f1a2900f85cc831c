//! The DHCP lease table in memory: who holds which address until when.
//!
//! Loaded from the store at start and updated as leases are granted; the store is the durable
//! copy (a lease is committed there before its ACK is sent). Answering from memory keeps the
//! packet path free of SQL, as Kea's memfile backend does.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::config::Pool;
use crate::net::MacAddr;
use crate::store::Lease;

/// Every current lease, by MAC and by address.
#[derive(Debug, Default)]
pub struct LeaseTable {
    by_mac: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    /// Addresses a client declined (someone else answers ARP for them): until when, and who.
    /// Only leased pool addresses get here, so the pools bound it.
    declined: HashMap<Ipv4Addr, (i64, MacAddr)>,
    /// Where the next search for a free pool address starts (Kea's iterative allocator): new
    /// clients get consecutive addresses, so a burst of DISCOVERs is not offered one address
    /// twice, and a search does not rescan the taken start of the pool.
    cursor: Cell<u32>,
}

impl LeaseTable {
    /// A table holding `leases` (from the store).
    pub fn new(leases: impl IntoIterator<Item = Lease>) -> Self {
        let mut table = Self::default();
        for lease in leases {
            table.record(lease);
        }
        table
    }

    /// The lease of `mac`, expired or not.
    pub fn get(&self, mac: MacAddr) -> Option<&Lease> {
        self.by_mac.get(&mac)
    }

    /// Keep `ip` out of the pool until `until_ms`: `mac` said something else uses it
    /// (DHCPDECLINE, RFC 2131 4.3.3). Refused (false) when `mac` already keeps `at_most`
    /// addresses out at `now_ms`.
    pub fn decline(
        &mut self,
        mac: MacAddr,
        ip: Ipv4Addr,
        until_ms: i64,
        now_ms: i64,
        at_most: usize,
    ) -> bool {
        self.declined.retain(|_, (until, _)| *until > now_ms);
        let by_mac = self.declined.values().filter(|(_, m)| *m == mac).count();
        if by_mac >= at_most {
            return false;
        }
        self.declined.insert(ip, (until_ms, mac));
        true
    }

    /// The MAC holding `ip` with a lease that has not expired at `now_ms`.
    pub fn holder(&self, ip: Ipv4Addr, now_ms: i64) -> Option<MacAddr> {
        let mac = self.by_ip.get(&ip)?;
        let lease = self.by_mac.get(mac)?;
        (lease.expires_at > now_ms).then_some(*mac)
    }

    /// An address from `pool` for `mac` (RFC 2131 4.3.1): the one it already has, else the one
    /// it asks for (`requested`) if nobody holds it, else the next free one after the cursor.
    /// Expired leases count as free, so addresses are reused.
    pub fn allocate(
        &self,
        mac: MacAddr,
        pool: &Pool,
        requested: Option<Ipv4Addr>,
        now_ms: i64,
    ) -> Option<Ipv4Addr> {
        let free_for = |ip: Ipv4Addr| {
            pool.contains(ip)
                && self.holder(ip, now_ms).is_none_or(|m| m == mac)
                && self
                    .declined
                    .get(&ip)
                    .is_none_or(|(until, _)| *until <= now_ms)
        };
        if let Some(lease) = self.by_mac.get(&mac)
            && free_for(lease.ip)
        {
            return Some(lease.ip);
        }
        if let Some(ip) = requested.filter(|ip| free_for(*ip)) {
            return Some(ip);
        }
        let (start, end) = (u32::from(pool.start), u32::from(pool.end));
        let size = end - start + 1;
        let cursor = self.cursor.get();
        // Past the end (or another pool's cursor): wrap to the start.
        let from = if (start..=end).contains(&cursor) {
            cursor
        } else {
            start
        };
        let found = (0..size)
            .map(|i| Ipv4Addr::from(start + (from - start + i) % size))
            .find(|ip| free_for(*ip))?;
        self.cursor.set(u32::from(found).wrapping_add(1));
        Some(found)
    }

    /// Record a granted lease, replacing the MAC's previous one and any stale holder of the
    /// address.
    pub fn record(&mut self, lease: Lease) {
        if let Some(old) = self.by_mac.get(&lease.mac)
            && old.ip != lease.ip
        {
            self.by_ip.remove(&old.ip);
        }
        if let Some(previous) = self.by_ip.insert(lease.ip, lease.mac)
            && previous != lease.mac
        {
            self.by_mac.remove(&previous);
        }
        self.by_mac.insert(lease.mac, lease);
    }

    /// Forget `mac`'s lease (DHCPRELEASE).
    pub fn release(&mut self, mac: MacAddr) -> Option<Lease> {
        let lease = self.by_mac.remove(&mac)?;
        if self.by_ip.get(&lease.ip) == Some(&mac) {
            self.by_ip.remove(&lease.ip);
        }
        Some(lease)
    }

    /// How many leases the table holds (expired ones included).
    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, n])
    }

    fn lease(n: u8, ip: [u8; 4], expires_at: i64) -> Lease {
        Lease {
            mac: mac(n),
            ip: Ipv4Addr::from(ip),
            node: None,
            expires_at,
        }
    }

    const POOL: Pool = Pool {
        start: Ipv4Addr::new(10, 0, 0, 10),
        end: Ipv4Addr::new(10, 0, 0, 12),
    };

    #[test]
    fn a_client_gets_its_previous_address_back() {
        let table = LeaseTable::new([lease(1, [10, 0, 0, 11], 100)]);
        assert_eq!(
            table.allocate(mac(1), &POOL, None, 50),
            Some(Ipv4Addr::new(10, 0, 0, 11))
        );
        assert_eq!(
            table.allocate(mac(2), &POOL, None, 50),
            Some(Ipv4Addr::new(10, 0, 0, 10))
        );
    }

    #[test]
    fn a_full_pool_has_nothing_until_a_lease_expires() {
        let table = LeaseTable::new([
            lease(1, [10, 0, 0, 10], 100),
            lease(2, [10, 0, 0, 11], 100),
            lease(3, [10, 0, 0, 12], 200),
        ]);
        assert_eq!(table.allocate(mac(4), &POOL, None, 50), None);
        assert_eq!(
            table.allocate(mac(4), &POOL, None, 150),
            Some(Ipv4Addr::new(10, 0, 0, 10))
        );
    }

    #[test]
    fn successive_new_clients_are_offered_different_addresses() {
        let table = LeaseTable::default();
        let a = table.allocate(mac(1), &POOL, None, 0).unwrap();
        let b = table.allocate(mac(2), &POOL, None, 0).unwrap();
        let c = table.allocate(mac(3), &POOL, None, 0).unwrap();
        assert!(a != b && b != c && a != c, "{a} {b} {c}");
        // The cursor wraps around to addresses that are still free.
        assert_eq!(table.allocate(mac(4), &POOL, None, 0), Some(a));
    }

    #[test]
    fn a_requested_free_address_is_honoured_and_a_taken_one_is_not() {
        let table = LeaseTable::new([lease(1, [10, 0, 0, 10], 100)]);
        let want = Some(Ipv4Addr::new(10, 0, 0, 12));
        assert_eq!(table.allocate(mac(2), &POOL, want, 50), want);
        let taken = Some(Ipv4Addr::new(10, 0, 0, 10));
        assert_ne!(table.allocate(mac(2), &POOL, taken, 50), taken);
        let outside = Some(Ipv4Addr::new(10, 0, 0, 99));
        assert_ne!(table.allocate(mac(2), &POOL, outside, 50), outside);
    }

    #[test]
    fn recording_moves_addresses_and_release_frees_them() {
        let mut table = LeaseTable::new([lease(1, [10, 0, 0, 10], 100)]);
        table.record(lease(2, [10, 0, 0, 10], 300));
        assert!(table.get(mac(1)).is_none(), "the stale holder is gone");
        assert_eq!(table.holder(Ipv4Addr::new(10, 0, 0, 10), 200), Some(mac(2)));
        table.record(lease(2, [10, 0, 0, 11], 300));
        assert_eq!(table.holder(Ipv4Addr::new(10, 0, 0, 10), 200), None);
        assert!(table.release(mac(2)).is_some());
        assert!(table.is_empty());
    }
}
