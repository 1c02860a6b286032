//! The node on ZooKeeper, end to end: a real ZooKeeper server (Debian's package, started by the
//! test on a free loopback port) and `candyboxd` children with `coordination = "zookeeper"`.
//! ZooKeeper is read directly (a raw `zookeeper-client` session, not the node's store) to check
//! the documented layout.
//!
//! - A cross-partition rename killed after its zero-copy put: the marker and the published refs
//!   sit at their documented paths, and after restart the rename converges (source gone,
//!   destination present, marker cleared, new leases with larger fencing tokens).
//! - ZooKeeper stopped mid-workload: every acknowledged put survives, puts during the outage
//!   fail with the typed Unavailable error, reads go on, and puts resume soon after ZooKeeper is
//!   back (past the session timeout: a new session, new leases).
//! - A session that expires while the node is paused (SIGSTOP): another holder takes one
//!   partition's lease; the resumed node never mutates that partition again (not-owner), takes
//!   new leases for the others, and a write fenced by the old token is refused by ZooKeeper.
//! - Box-global GC: a Syrup shared by two partitions through a zero-copy copy is kept while the
//!   copy's partition publishes it, across a restart.

mod harness;

use std::time::{Duration, Instant};

use bytes::Bytes;
use candybox_core::{
    coord::{decode_refs, CoordError, Coordination, Fence, LeaseEntry, MemberEntry, RenameMarker},
    types::SyrupId,
};
use candybox_shards::zk::{ZkConfig, ZooKeeperCoordination};
use candybox_wire::client::{ByteRange, ClientError, PutOptions, TokioClient};
use harness::{eventually, key_in_partition, pattern, zk::ZkServer, Node};
use zookeeper_client as zk;

const CHROOT: &str = "/candybox-e2e";

fn zk_args(server: &ZkServer, session_ms: u64) -> Vec<String> {
    vec![
        "--coordination".into(),
        "zookeeper".into(),
        "--zookeeper-connect".into(),
        server.connect_string(),
        "--zookeeper-chroot".into(),
        CHROOT.into(),
        "--zookeeper-session-timeout-ms".into(),
        session_ms.to_string(),
        "--maintenance-interval-ms".into(),
        "100".into(),
    ]
}

fn start_node(root: &std::path::Path, server: &ZkServer, session_ms: u64, extra: &[&str]) -> Node {
    let mut args = zk_args(server, session_ms);
    if extra.contains(&"--maintenance-interval-ms") {
        // The test's own interval replaces the default one (a flag may be given once).
        let at = args.iter().position(|a| a == "--maintenance-interval-ms").unwrap_or(0);
        args.drain(at..at + 2);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(root, &args, &[("CANDYBOX_RENAME_INTENT_ABANDON_MS", "60000")])
}

/// A raw ZooKeeper session below the node's chroot.
async fn raw(server: &ZkServer) -> zk::Client {
    zk::Client::connect(&format!("{}{CHROOT}", server.connect_string())).await.expect("raw zookeeper session")
}

async fn read(zk: &zk::Client, path: &str) -> Option<(Vec<u8>, i32)> {
    match zk.get_data(path).await {
        Ok((data, stat)) => Some((data, stat.version)),
        Err(zk::Error::NoNode) => None,
        Err(e) => panic!("read {path} from zookeeper: {e}"),
    }
}

async fn lease_of(zk: &zk::Client, box_name: &str, p: u16) -> Option<LeaseEntry> {
    let (data, _) = read(zk, &format!("/boxes/{box_name}/partitions/{p}/owner")).await?;
    Some(LeaseEntry::decode(&data).expect("owner entry decodes"))
}

fn token_hex(token: &[u8]) -> String {
    let mut t = [0u8; 16];
    t.copy_from_slice(token);
    format!("{:032x}", u128::from_le_bytes(t))
}

async fn absent(c: &TokioClient, box_name: &str, key: &[u8]) -> bool {
    matches!(c.head(box_name, key).await, Err(ClientError::NotFound { .. }))
}

#[tokio::test(flavor = "current_thread")]
async fn rename_crash_leaves_marker_and_refs_at_their_paths_and_converges() {
    let server = ZkServer::start_default();
    let dir = tempfile::tempdir().expect("temp dir");
    // A slow sweep, so that the marker is still there to be read before the kill; the first
    // pass after the restart finalizes the rename.
    let mut node =
        start_node(dir.path(), &server, 4000, &["--inline-bytes-max", "0", "--maintenance-interval-ms", "5000"]);
    let c = node.client(true).await;
    c.create_box("zkbox", Some(4)).await.expect("create box");
    let (src, sp) = key_in_partition("src-", 4, |_| true);
    let (dst, tp) = key_in_partition("dst-", 4, |q| q != sp);
    let body = Bytes::from(pattern(7, 300_000));
    c.put_bytes("zkbox", &src, &PutOptions::default(), body.clone()).await.expect("put");
    let prepared = c.prepare_rename("zkbox", &src, &dst).await.expect("prepare");
    c.zero_copy_put("zkbox", &dst, &prepared.locator, Some(&prepared)).await.expect("zero-copy put");

    let zk = raw(&server).await;
    let member = read(&zk, "/members/1").await.expect("the node's member entry");
    let member = MemberEntry::decode(&member.0).expect("member entry decodes");
    assert_eq!((member.node, member.addr.as_str()), (1, node.ports.listen.as_str()));
    let marker_path = format!("/boxes/zkbox/renames/{}", token_hex(&prepared.token));
    let (marker, _) = read(&zk, &marker_path).await.expect("the rendezvous marker at its documented path");
    let marker = RenameMarker::decode(&marker).expect("marker decodes");
    assert_eq!((marker.source_partition, marker.target_partition), (sp, tp));
    assert_eq!(marker.target_key, dst);
    let (refs, _) = read(&zk, &format!("/boxes/zkbox/partitions/{tp}/refs")).await.expect("published refs");
    let refs = decode_refs(&refs).expect("refs decode");
    assert!(!refs.is_empty(), "the destination publishes the Syrup its locator shares");
    for id in &refs {
        assert!(node.data_dir.join("syrups").join(id.file_name()).exists(), "published Syrup {id:?} exists");
    }
    let before = lease_of(&zk, "zkbox", sp).await.expect("the source partition's lease");
    assert_eq!(before.node, 1);
    drop(c);
    node.kill();

    node.restart();
    let c = node.client(true).await;
    eventually(Duration::from_secs(30), "the interrupted rename finalizes after restart", || async {
        absent(&c, "zkbox", &src).await
    })
    .await;
    let (_, got) = c.get_to_vec("zkbox", &dst, ByteRange::Whole).await.expect("destination");
    assert_eq!(got, body, "destination has the source's bytes");
    let deadline = Instant::now() + Duration::from_secs(10);
    while read(&zk, &marker_path).await.is_some() {
        assert!(Instant::now() < deadline, "the marker was not cleared; node log:\n{}", node.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = lease_of(&zk, "zkbox", sp).await.expect("the source partition's lease after restart");
    assert_eq!(after.node, 1);
    assert!(after.token > before.token, "a restarted node holds a new lease: {} > {}", after.token, before.token);
    assert_ne!(after.session, before.session);
}

#[tokio::test(flavor = "current_thread")]
async fn zookeeper_outage_refuses_mutations_keeps_acknowledged_ones_and_resumes() {
    let mut server = ZkServer::start_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let session_ms = 3000;
    let node = start_node(dir.path(), &server, session_ms, &[]);
    let c = node.client(true).await;
    c.create_box("outage", Some(4)).await.expect("create box");
    let mut acked: Vec<(Vec<u8>, Bytes)> = Vec::new();
    let mut refused = 0usize;
    let put = |i: usize| {
        let key = format!("k-{i:05}").into_bytes();
        let body = Bytes::from(pattern(i as u64, 1000 + i % 3000));
        (key, body)
    };
    let mut i = 0;
    // Before: every put is acknowledged.
    for _ in 0..50 {
        let (key, body) = put(i);
        c.put_bytes("outage", &key, &PutOptions::default(), body.clone()).await.expect("put before the outage");
        acked.push((key, body));
        i += 1;
    }
    server.stop();
    let stopped = Instant::now();
    // During: puts go on until the node refuses them with the typed error; acknowledged ones are
    // kept for the check below.
    let outage = Duration::from_millis(session_ms + 3000);
    while stopped.elapsed() < outage {
        let (key, body) = put(i);
        match c.put_bytes("outage", &key, &PutOptions::default(), body.clone()).await {
            Ok(_) => acked.push((key, body)),
            Err(ClientError::Unavailable { .. }) => refused += 1,
            Err(e) => panic!("a put during the outage failed with an untyped or wrong error: {e}"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0, "no put was refused during a {outage:?} outage");
    assert_eq!(node.metric_sum("candybox_coordination_session_live"), 0.0, "the session gauge during the outage");
    // Every kind of mutation is refused with the typed error, not only puts.
    let (k0, _) = &acked[0];
    assert!(matches!(c.delete("outage", k0).await, Err(ClientError::Unavailable { .. })), "delete during the outage");
    assert!(
        matches!(c.copy("outage", k0, b"copy-during-outage").await, Err(ClientError::Unavailable { .. })),
        "copy during the outage"
    );
    assert!(
        matches!(c.rename("outage", k0, b"renamed-during-outage").await, Err(ClientError::Unavailable { .. })),
        "rename during the outage"
    );
    // Reads of durable data go on.
    let (key, body) = &acked[0];
    let (_, got) = c.get_to_vec("outage", key, ByteRange::Whole).await.expect("a read during the outage");
    assert_eq!(&got, body);
    server.start();
    let back = Instant::now();
    let bound = Duration::from_millis(session_ms) + Duration::from_secs(8);
    loop {
        let (key, body) = put(i);
        i += 1;
        match c.put_bytes("outage", &key, &PutOptions::default(), body.clone()).await {
            Ok(_) => {
                acked.push((key, body));
                break;
            }
            Err(ClientError::Unavailable { .. }) if back.elapsed() < bound => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("puts did not resume within {bound:?} of ZooKeeper's restart: {e}"),
        }
    }
    let resumed_after = back.elapsed();
    eprintln!("outage: {refused} puts refused; resumed {resumed_after:?} after zookeeper restarted");
    for (key, body) in &acked {
        let (_, got) = c.get_to_vec("outage", key, ByteRange::Whole).await.expect("an acknowledged put");
        assert_eq!(&got, body, "acknowledged put {:?} intact", String::from_utf8_lossy(key));
    }
    assert!(node.metric_sum("candybox_lease_refusals_total") > 0.0);
    assert_eq!(node.metric_sum("candybox_coordination_session_live"), 1.0, "the session gauge after the outage");
    assert!(absent(&c, "outage", b"copy-during-outage").await, "a refused copy wrote nothing");
}

#[tokio::test(flavor = "current_thread")]
async fn expired_session_loses_leases_and_the_old_token_is_refused() {
    let server = ZkServer::start_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let session_ms = 2000;
    let node = start_node(dir.path(), &server, session_ms, &[]);
    let c = node.client(true).await;
    c.create_box("fence", Some(4)).await.expect("create box");
    let (taken_key, taken) = key_in_partition("taken-", 4, |_| true);
    let (kept_key, kept) = key_in_partition("kept-", 4, |q| q != taken);
    c.put_bytes("fence", &taken_key, &PutOptions::default(), Bytes::from_static(b"v1")).await.expect("put");
    c.put_bytes("fence", &kept_key, &PutOptions::default(), Bytes::from_static(b"v1")).await.expect("put");
    let zk = raw(&server).await;
    let refs_path = format!("/boxes/fence/partitions/{taken}/refs");
    eventually(Duration::from_secs(10), "maintenance publishes the partition's refs", || async {
        read(&zk, &refs_path).await.is_some()
    })
    .await;
    let old = lease_of(&zk, "fence", taken).await.expect("lease of the partition to take");
    let kept_before = lease_of(&zk, "fence", kept).await.expect("lease of the other partition");

    // Pause the node past its session timeout: ZooKeeper expires the session and drops its
    // ephemeral entries (member and leases).
    node.signal(libc::SIGSTOP);
    let owner = format!("/boxes/fence/partitions/{taken}/owner");
    let deadline = Instant::now() + Duration::from_secs(30);
    while read(&zk, &owner).await.is_some() {
        assert!(Instant::now() < deadline, "the paused node's lease did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another holder (node 9) takes the lease the way a node does: bump the partition entry's
    // version (the new fencing token), then create the ephemeral owner entry.
    let record = format!("/boxes/fence/partitions/{taken}");
    let (_, v) = read(&zk, &record).await.expect("partition entry");
    let stat = zk.set_data(&record, &[], Some(v)).await.expect("bump the fencing token");
    let new_token = stat.version as u64;
    let lease = LeaseEntry { node: 9, session: zk.session_id().0 as u64, token: new_token };
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    zk.create(&owner, &lease.encode(), &ephemeral).await.expect("take the lease as node 9");
    let nine = MemberEntry { node: 9, session: lease.session, addr: "127.0.0.1:9".into(), shard_ports: vec![] };
    zk.create("/members/9", &nine.encode(), &ephemeral).await.expect("register node 9");
    let (refs_before, refs_version) = read(&zk, &refs_path).await.expect("refs of the taken partition");
    node.signal(libc::SIGCONT);

    // The resumed node takes new leases for its other partitions and resumes there.
    eventually(Duration::from_secs(20), "puts resume on the partition still ours", || async {
        c.put_bytes("fence", &kept_key, &PutOptions::default(), Bytes::from_static(b"v2")).await.is_ok()
    })
    .await;
    let kept_after = lease_of(&zk, "fence", kept).await.expect("new lease");
    assert!(kept_after.token > kept_before.token, "a new session's lease has a larger token");
    // It never mutates the partition another node holds: not-owner, naming that node.
    for _ in 0..5 {
        match c.put_bytes("fence", &taken_key, &PutOptions::default(), Bytes::from_static(b"v2")).await {
            Err(ClientError::NotOwner { owner, .. }) => assert_eq!(owner, "127.0.0.1:9"),
            other => panic!("a mutation of a partition held by another node: {other:?}"),
        }
    }
    let (_, got) = c.get_to_vec("fence", &taken_key, ByteRange::Whole).await.expect("reads of durable data go on");
    assert_eq!(got, b"v1");
    // Several maintenance passes later its published set is untouched by the old holder.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let refs_after = read(&zk, &refs_path).await.expect("refs");
    assert_eq!((refs_after.0, refs_after.1), (refs_before, refs_version), "the old holder wrote refs");
    // The old lease's fencing token is refused by ZooKeeper itself.
    let mut store = ZooKeeperCoordination::connect(ZkConfig {
        connect: server.connect_string(),
        chroot: CHROOT.into(),
        session_timeout: Duration::from_secs(4),
        call_timeout: Duration::from_secs(5),
    })
    .expect("store session");
    let stale = Fence { path: format!("boxes/fence/partitions/{taken}"), version: old.token };
    let refused = store.put_fenced(&stale, &format!("boxes/fence/partitions/{taken}/refs"), b"stale");
    assert!(
        matches!(refused, Err(CoordError::Fenced { token, found: Some(f), .. }) if token == old.token && f == new_token),
        "a write fenced by the old token: {refused:?}"
    );
    let current = Fence { path: stale.path.clone(), version: new_token };
    store.put_fenced(&current, "boxes/fence/partitions/probe", b"ok").expect("the current token is accepted");
    assert!(node.metric_sum("candybox_lease_refusals_total") > 0.0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_syrup_shared_by_two_partitions_is_kept_while_either_publishes_it() {
    let server = ZkServer::start_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = start_node(dir.path(), &server, 4000, harness::EAGER_GC_ARGS);
    let c = node.client(true).await;
    c.create_box("shared", Some(4)).await.expect("create box");
    let (src, sp) = key_in_partition("src-", 4, |_| true);
    let (copy, cp) = key_in_partition("copy-", 4, |q| q != sp);
    let body = Bytes::from(pattern(11, 40_000));
    c.put_bytes("shared", &src, &PutOptions::default(), body.clone()).await.expect("put source");
    c.copy("shared", &src, &copy).await.expect("zero-copy copy across partitions");
    let zk = raw(&server).await;
    let (refs, _) = read(&zk, &format!("/boxes/shared/partitions/{cp}/refs")).await.expect("copy's refs");
    let source_syrups: Vec<SyrupId> = decode_refs(&refs).expect("refs decode").into_iter().collect();
    assert!(!source_syrups.is_empty(), "the copy's partition publishes the shared Syrup");
    c.delete("shared", &src).await.expect("delete the source");
    // Churn in the source's partition: big puts then deletes roll Syrups and give GC work.
    for i in 0..30 {
        let (k, _) = key_in_partition(&format!("churn-{i}-"), 4, |q| q == sp);
        c.put_bytes("shared", &k, &PutOptions::default(), Bytes::from(pattern(i, 30_000))).await.expect("churn");
        c.delete("shared", &k).await.expect("churn delete");
    }
    for i in 0..200 {
        c.put_bytes("shared", format!("filler-{i:03}").as_bytes(), &PutOptions::default(), Bytes::from_static(b"f"))
            .await
            .expect("filler");
    }
    eventually(Duration::from_secs(30), "Syrup GC reclaims the churn", || async {
        node.metric_sum("candybox_gc_reclaimed_bytes_total") > 0.0
    })
    .await;
    // Space reclamation may move the copy out of the shared Syrup (its source partition condemns
    // it once mostly dead) and then delete it: what must hold is that every Syrup the copy's
    // partition publishes exists, and the copy reads back intact.
    let refs_path = format!("/boxes/shared/partitions/{cp}/refs");
    let check = |node: &Node, refs: &[u8]| {
        for id in decode_refs(refs).expect("refs decode") {
            assert!(node.data_dir.join("syrups").join(id.file_name()).exists(), "published Syrup {id:?} was deleted");
        }
    };
    check(&node, &read(&zk, &refs_path).await.expect("copy's refs").0);
    let (_, got) = c.get_to_vec("shared", &copy, ByteRange::Whole).await.expect("the copy");
    assert_eq!(got, body);
    drop(c);
    assert!(node.terminate().success());
    node.restart();
    let c = node.client(true).await;
    let passes = node.metric_sum("candybox_maintenance_passes_total");
    eventually(Duration::from_secs(30), "maintenance runs after the restart", || async {
        node.metric_sum("candybox_maintenance_passes_total") >= passes + 20.0
    })
    .await;
    check(&node, &read(&zk, &refs_path).await.expect("copy's refs").0);
    let (_, got) = c.get_to_vec("shared", &copy, ByteRange::Whole).await.expect("the copy after restart");
    assert_eq!(got, body);
}

/// The `candybox` CLI next to this test binary (`target/<profile>/candybox`): `cargo test
/// --workspace` builds it with every other target; when it is missing (this package's tests run
/// alone) it is built here. `CANDYBOX_CLI` names another binary.
fn cli_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CANDYBOX_CLI") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile directory");
    let bin = dir.join("candybox");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "candybox-tools", "--bin", "candybox"])
            .status()
            .expect("run cargo build for the candybox CLI");
        assert!(status.success(), "build the CLI: cargo build -p candybox-tools --bin candybox");
    }
    bin
}

#[tokio::test(flavor = "current_thread")]
async fn two_nodes_on_one_zookeeper_serve_every_box_through_either() {
    let server = ZkServer::start_default();
    let (dir_a, dir_b) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let a = start_node(dir_a.path(), &server, 4000, &["--node-id", "1"]);
    let mut b = start_node(dir_b.path(), &server, 4000, &["--node-id", "2"]);
    let (ca, cb) = (a.client(true).await, b.client(true).await);
    let zk = raw(&server).await;
    let names: Vec<String> = (0..12).map(|i| format!("multi-{i:02}")).collect();
    let mut served_by = std::collections::BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        // Created through either node; placed on a live node by the documented function.
        let creator = if i % 2 == 0 { &ca } else { &cb };
        creator.create_box(name, Some(4)).await.expect("create box");
        let (meta, _) = read(&zk, &format!("/boxes/{name}/meta")).await.expect("box meta");
        let node = candybox_core::coord::BoxMeta::decode(&meta).expect("meta decodes").node;
        served_by.insert(name.clone(), node);
    }
    // head-box and list-boxes, on either node, name the serving node.
    for b in cb.list_boxes().await.expect("list boxes through node 2") {
        assert_eq!(Some(&b.node), served_by.get(&b.name), "{}: list-boxes names the serving node", b.name);
    }
    assert!(served_by.values().any(|n| *n == 1), "no Box on node 1: {served_by:?}");
    assert!(served_by.values().any(|n| *n == 2), "no Box on node 2: {served_by:?}");
    // Every Box through either node: writes through one, reads through the other.
    for (i, name) in names.iter().enumerate() {
        let (writer, reader) = if i % 2 == 0 { (&ca, &cb) } else { (&cb, &ca) };
        let body = Bytes::from(pattern(i as u64, 5000));
        writer.put_bytes(name, b"hello", &PutOptions::default(), body.clone()).await.expect("put through either node");
        let (_, got) = reader.get_to_vec(name, b"hello", ByteRange::Whole).await.expect("get through the other");
        assert_eq!(got, body);
        reader.copy(name, b"hello", b"hello-copy").await.expect("copy through the other");
        let listed = writer.list_all(name, &Default::default()).await.expect("list");
        assert_eq!(listed.len(), 2, "{name}: both keys listed");
    }
    // A request sent to the wrong node is answered not-owner, naming the serving node.
    let (on_b, _) = served_by.iter().find(|(_, n)| **n == 2).expect("a Box on node 2");
    let no_follow = a.client_with(|c| c.follow_redirects = false).await;
    match no_follow.head(on_b, b"hello").await {
        Err(ClientError::NotOwner { owner, .. }) => assert_eq!(owner, b.ports.listen),
        other => panic!("a request for a Box of node 2 sent to node 1: {other:?}"),
    }
    // The CLI, pointed at node 1, reaches a Box of node 2.
    let out = std::process::Command::new(cli_binary())
        .args(["--server", &a.ports.listen, "get", on_b, "hello-copy"])
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "CLI get through the other node: {}", String::from_utf8_lossy(&out.stderr));
    let i = names.iter().position(|n| n == on_b).expect("index");
    assert_eq!(out.stdout, pattern(i as u64, 5000));
    // Both nodes are registered members.
    for node in [1u16, 2] {
        let (m, _) = read(&zk, &format!("/members/{node}")).await.expect("member entry");
        let m = MemberEntry::decode(&m).expect("member decodes");
        assert_eq!(m.addr, if node == 1 { a.ports.listen.clone() } else { b.ports.listen.clone() });
    }
    // The Box is deleted, node 2 stops, and the Box is created again: now on node 1, the only
    // live member. Node 1 cached the old placement; it must not redirect to the old home.
    let on_b = on_b.clone();
    cb.delete_box(&on_b, true).await.expect("delete the box on node 2");
    drop(cb);
    assert!(b.terminate().success());
    assert!(read(&zk, "/members/2").await.is_none(), "a stopped node's member entry is gone at once");
    let fresh = a.client(true).await;
    let info = fresh.create_box(&on_b, Some(4)).await.expect("create the box again");
    assert_eq!(info.partitions, 4);
    let (meta, _) = read(&zk, &format!("/boxes/{on_b}/meta")).await.expect("box meta");
    assert_eq!(candybox_core::coord::BoxMeta::decode(&meta).expect("meta").node, 1, "placed on the live node");
    fresh.put_bytes(&on_b, b"again", &PutOptions::default(), Bytes::from_static(b"again")).await.expect("put");
    let (_, got) = fresh.get_to_vec(&on_b, b"again", ByteRange::Whole).await.expect("get");
    assert_eq!(got, b"again");
    // Node 2 is back and the Box moves to it (deleted, created again with both nodes live). The
    // client had learned that node 1 serves it: one not-owner reply, then it follows the move.
    b.restart();
    fresh.delete_box(&on_b, true).await.expect("delete the box on node 1");
    fresh.create_box(&on_b, Some(4)).await.expect("create it again");
    let (meta, _) = read(&zk, &format!("/boxes/{on_b}/meta")).await.expect("box meta");
    assert_eq!(candybox_core::coord::BoxMeta::decode(&meta).expect("meta").node, 2, "placed on node 2 again");
    let first = fresh.head(&on_b, b"again").await;
    assert!(
        matches!(first, Err(ClientError::NotOwner { .. }) | Err(ClientError::NotFound { .. })),
        "the first request after the move: {first:?}"
    );
    fresh
        .put_bytes(&on_b, b"moved", &PutOptions::default(), Bytes::from_static(b"m"))
        .await
        .expect("put after the move");
    let (_, got) = b.client(true).await.get_to_vec(&on_b, b"moved", ByteRange::Whole).await.expect("get on node 2");
    assert_eq!(got, b"m");
}

/// Runs `candyboxd` with `args` expecting it to fail at start: its exit status and stderr.
fn start_fails(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_candyboxd"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--port-base", "0", "--shards", "1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start candyboxd");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("candyboxd did not exit within 30 s although it should refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read as _;
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut stderr);
    (status, stderr)
}

#[tokio::test(flavor = "current_thread")]
async fn one_process_per_data_dir_and_per_node_id() {
    let server = ZkServer::start_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start_node(dir.path(), &server, 2000, &[]);
    // A second process on the same data directory is refused at once.
    let mut same_dir = zk_args(&server, 2000);
    same_dir.extend(["--data-dir".to_string(), node.data_dir.display().to_string()]);
    let (status, stderr) = start_fails(&same_dir);
    assert!(!status.success());
    assert!(stderr.contains("in use by another candyboxd"), "stderr: {stderr}");
    // A second process with the same node id (another data directory) does not steal the live
    // node's registration: it waits out the session timeout, then refuses to start.
    let other = tempfile::tempdir().expect("temp dir");
    let mut same_id = zk_args(&server, 2000);
    same_id.extend(["--data-dir".to_string(), other.path().display().to_string()]);
    let started = Instant::now();
    let (status, stderr) = start_fails(&same_id);
    assert!(!status.success());
    assert!(stderr.contains("is another node running with node_id 1"), "stderr: {stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited for a possibly stale entry first");
    let zk = raw(&server).await;
    let (m, _) = read(&zk, "/members/1").await.expect("member entry");
    assert_eq!(MemberEntry::decode(&m).expect("decodes").addr, node.ports.listen, "the live node keeps its entry");
    let c = node.client(true).await;
    c.create_box("still", Some(2)).await.expect("the live node still serves");
}
