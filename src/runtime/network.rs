//! Addresses on berth's network, decided as data (unit-tested): which subnet a new network
//! takes, and which fixed address each new node gets.
//!
//! Nodes keep the same address for life — kubeadm's certificates, etcd's peer URLs and the
//! kubelet's --node-ip all name it — so a node restarted after its cluster was stopped, or after
//! dockerd restarted, must get it back. Docker gives a container a fixed address only on a
//! network whose subnet was configured by the user, so berth configures one: the lower half is
//! Docker's dynamic pool (for other containers), the upper half is where berth pins nodes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::config::Cidr;

/// Subnets tried, in order, for a new network: the /16s Docker itself would hand out.
pub fn candidate_subnets() -> impl Iterator<Item = Cidr> {
    (18u8..=31)
        .filter_map(|b| Cidr::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0u8..=240).step_by(16).filter_map(|c| Cidr::new(Ipv4Addr::new(192, 168, c, 0), 20)))
}

/// The first candidate that overlaps none of `taken`.
pub fn choose_subnet(taken: &[Cidr]) -> Option<Cidr> {
    candidate_subnets().find(|c| taken.iter().all(|t| !t.overlaps(*c)))
}

/// Subnets this host routes directly (`/proc/net/route`'s format), the default route aside: a
/// new network there would shadow them, and Podman refuses a subnet a host route covers
/// ("already used on the host"). Every engine's bridges are among them.
pub fn routed_subnets(proc_net_route: &str) -> Vec<Cidr> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, mask) = (f.get(1)?, f.get(7)?);
            // The kernel prints both as the in-memory (little-endian) u32 in hex.
            let addr = Ipv4Addr::from(u32::from_be(u32::from_str_radix(dest, 16).ok()?));
            let mask = u32::from_be(u32::from_str_radix(mask, 16).ok()?);
            (mask != 0).then(|| Cidr::new(addr, mask.count_ones() as u8)).flatten()
        })
        .collect()
}

/// The gateway (first host address) of a subnet.
pub fn gateway(subnet: Cidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Docker's dynamic pool: the lower half of the subnet.
pub fn dynamic_range(subnet: Cidr) -> Cidr {
    subnet.halves().map_or(subnet, |(lower, _)| lower)
}

/// `count` free addresses from the upper half of `subnet`, lowest first, avoiding `used`.
pub fn allocate(subnet: Cidr, used: &BTreeSet<Ipv4Addr>, count: usize) -> Option<Vec<Ipv4Addr>> {
    let (_, upper) = subnet.halves()?;
    let first = u32::from(upper.network()) + 1; // skip the upper half's network-like first address
    let last = u32::from(subnet.broadcast()) - 1; // keep the broadcast address free
    let picked: Vec<Ipv4Addr> = (first..=last).map(Ipv4Addr::from).filter(|ip| !used.contains(ip)).take(count).collect();
    (picked.len() == count).then_some(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn skips_subnets_in_use() {
        assert_eq!(choose_subnet(&[]), Some(cidr("172.18.0.0/16")));
        assert_eq!(choose_subnet(&[cidr("172.17.0.0/16"), cidr("172.18.0.0/16")]), Some(cidr("172.19.0.0/16")));
        let all: Vec<Cidr> = candidate_subnets().collect();
        assert_eq!(choose_subnet(&all), None);
        assert_eq!(choose_subnet(&[cidr("172.16.0.0/12")]), Some(cidr("192.168.0.0/20")));
    }

    #[test]
    fn host_routes_are_read_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                     eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routed = routed_subnets(table);
        assert_eq!(routed, vec![cidr("172.17.0.0/16"), cidr("192.0.2.0/24")], "the default route is not a subnet in use");
        assert_eq!(choose_subnet(&[routed, vec![cidr("172.18.0.0/16")]].concat()), Some(cidr("172.19.0.0/16")));
        assert!(routed_subnets("").is_empty());
    }

    #[test]
    fn allocates_from_the_upper_half_around_used_addresses() {
        let s = cidr("172.18.0.0/16");
        assert_eq!(gateway(s), Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(dynamic_range(s), cidr("172.18.0.0/17"));
        let used: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(172, 18, 128, 2)].into();
        assert_eq!(allocate(s, &used, 2), Some(vec![Ipv4Addr::new(172, 18, 128, 1), Ipv4Addr::new(172, 18, 128, 3)]));
        let small = cidr("192.168.0.0/30");
        assert_eq!(allocate(small, &BTreeSet::new(), 5), None);
    }
}
