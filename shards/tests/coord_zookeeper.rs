//! The ZooKeeper coordination store against a real ZooKeeper server (Debian's `zookeeper`
//! package, standalone, started by the test on a free loopback port): the shared contract suite,
//! the chroot, and a session that expires while the store is in use.

mod harness;

use std::time::Duration;

use candybox_core::{
    coord::{CoordError, Coordination, CreateMode},
    testing::coord_contract,
};
use candybox_shards::zk::{ZkConfig, ZooKeeperCoordination};
use harness::zk::ZkServer;

fn config(server: &ZkServer, chroot: &str) -> ZkConfig {
    ZkConfig {
        connect: server.connect_string(),
        chroot: chroot.to_owned(),
        session_timeout: Duration::from_secs(4),
        call_timeout: Duration::from_secs(5),
    }
}

fn connect(config: &ZkConfig) -> ZooKeeperCoordination {
    ZooKeeperCoordination::connect(config.clone()).unwrap_or_else(|e| panic!("connect to zookeeper: {e}"))
}

#[test]
fn contract_suite() {
    let server = ZkServer::start_default();
    let config = config(&server, "/candybox-contract");
    coord_contract::run_all(&mut || Box::new(connect(&config)) as Box<dyn Coordination>);
}

#[test]
fn entries_live_below_the_chroot() {
    let server = ZkServer::start_default();
    let mut inside = connect(&config(&server, "/candybox"));
    inside.create("boxes/photos/meta", b"m", CreateMode::Persistent).expect("create");
    let mut root = connect(&config(&server, ""));
    assert_eq!(root.get("candybox/boxes/photos/meta").expect("get"), Some((b"m".to_vec(), 0)));
    assert_eq!(root.children("candybox").expect("children"), ["boxes"]);
    let mut other = connect(&config(&server, "/other/nested"));
    assert_eq!(other.get("boxes/photos/meta").expect("get"), None, "chroots are disjoint");
    assert!(matches!(
        ZooKeeperCoordination::connect(ZkConfig { chroot: "relative".into(), ..config(&server, "") }),
        Err(CoordError::BadPath(_))
    ));
}

#[test]
fn unreachable_server_is_unavailable() {
    let mut server = ZkServer::start_default();
    let config = config(&server, "/candybox");
    let mut s = connect(&config);
    let id = s.session_id().expect("session");
    let watch = s.session_watch();
    assert!(watch.holds(id));
    server.stop();
    // The client notices the lost connection within its connection timeout (2/5 of the session).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while watch.connected() {
        assert!(std::time::Instant::now() < deadline, "the watch still says connected 10 s after the server stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let r = s.create("boxes/x/meta", b"", CreateMode::Persistent);
    assert!(matches!(r, Err(CoordError::Unavailable(_))), "a call while the server is down: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "the call is bounded");
    server.start();
    // Either the old session resumes or (past its timeout) a new one is made: calls work again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match s.put("boxes/x/meta", b"back") {
            Ok(_) => break,
            Err(CoordError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("calls did not resume after the server restarted: {e}"),
        }
    }
    assert!(watch.connected(), "the watch says connected again");
    assert_eq!(s.get("boxes/x/meta").expect("get"), Some((b"back".to_vec(), 0)));
}

/// The lease and membership protocols (`candybox_shards::lease`) between two nodes' sessions on
/// one ZooKeeper: one holder at a time, strictly increasing fencing tokens, a node's own entries
/// of an earlier session replaced, another live session's never taken over.
#[test]
fn leases_and_membership_between_two_nodes() {
    use candybox_core::coord::{paths, LeaseRecord, MemberEntry};
    use candybox_shards::lease::{register_member, take_lease, LeaseAnswer};

    let server = ZkServer::start_default();
    let config = config(&server, "/candybox-leases");
    let mut one = connect(&config);
    let mut two = connect(&config);
    let held = |a: LeaseAnswer| match a {
        LeaseAnswer::Held(l) => l,
        LeaseAnswer::Other { node } => panic!("expected to hold the lease, node {node} does"),
    };
    let first = held(take_lease(&mut one, "photos", 3, 1).expect("node 1 takes the lease"));
    assert_eq!(first.node, 1);
    assert_eq!(first.session, one.session_id().expect("session"));
    let (record, version) = one.get(&paths::partition("photos", 3)).expect("get").expect("partition entry");
    assert_eq!(version, first.token, "the token is the partition entry's version");
    assert_eq!(LeaseRecord::decode(&record).expect("record").map(|r| r.node), Some(1));
    assert_eq!(held(take_lease(&mut one, "photos", 3, 1).expect("again")), first, "a held lease is confirmed as is");
    assert_eq!(take_lease(&mut two, "photos", 3, 2).expect("node 2 asks"), LeaseAnswer::Other { node: 1 });
    // Node 1's session ends: node 2 takes the lease with a larger token.
    drop(one);
    let second = held(take_lease(&mut two, "photos", 3, 2).expect("node 2 takes the freed lease"));
    assert!(second.token > first.token, "tokens increase: {} > {}", second.token, first.token);
    let mut one = connect(&config);
    assert_eq!(take_lease(&mut one, "photos", 3, 1).expect("node 1 asks again"), LeaseAnswer::Other { node: 2 });
    // Node 2 restarted while its old session lingers: a new session of node 2 replaces its own
    // earlier lease, with a new token.
    let mut two_again = connect(&config);
    let third = held(take_lease(&mut two_again, "photos", 3, 2).expect("node 2's new session"));
    assert!(third.token > second.token);
    assert_ne!(third.session, second.session);

    // Membership: a live session's entry is never taken over; the node's own earlier one is.
    let entry = |s: &mut ZooKeeperCoordination| MemberEntry {
        node: 7,
        session: s.session_id().expect("session"),
        addr: "127.0.0.1:7420".into(),
        shard_ports: vec![7421],
    };
    let first_entry = entry(&mut one);
    register_member(&mut one, &first_entry, None).expect("register");
    let other = entry(&mut two_again);
    let stolen = register_member(&mut two_again, &other, None);
    assert!(matches!(stolen, Err(CoordError::NodeExists(_))), "another live session's entry taken over: {stolen:?}");
    register_member(&mut two_again, &other, Some(first_entry.session)).expect("replace this node's earlier entry");
    let (data, _) = two_again.get(&paths::member(7)).expect("get").expect("member entry");
    assert_eq!(MemberEntry::decode(&data).expect("decodes").session, other.session);
}
