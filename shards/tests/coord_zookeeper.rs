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
