//! Crash windows of the node, end to end with SIGKILL:
//! - a cross-partition rename killed after the destination's zero-copy put but before
//!   complete-rename converges after restart to "source gone, destination present";
//! - a prepare-rename whose destination never happens is abandoned after the (shortened)
//!   window, and the source stays;
//! - a source re-put between prepare and finalize is never deleted, whether the client
//!   completes the rename or the node's sweep does after a crash;
//! - a storm of concurrent puts from several connections, killed mid-way: every acknowledged
//!   put reads back identical after restart.

mod harness;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, PutOptions, RenameOutcome, TokioClient};
use harness::{eventually, key_in_partition, pattern, Node};

/// A short abandon window and a fast maintenance loop, so the sweep is observable in a test.
const ENVS: &[(&str, &str)] =
    &[("CANDYBOX_RENAME_INTENT_ABANDON_MS", "1500"), ("CANDYBOX_MAINTENANCE_INTERVAL_MS", "100")];

async fn absent(c: &TokioClient, key: &[u8]) -> bool {
    matches!(c.head("crash", key).await, Err(ClientError::NotFound { .. }))
}

async fn bytes_of(c: &TokioClient, key: &[u8]) -> Option<Vec<u8>> {
    c.get_to_vec("crash", key, ByteRange::Whole).await.ok().map(|(_, b)| b)
}

#[tokio::test(flavor = "current_thread")]
async fn rename_crash_windows_converge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(dir.path(), &[], ENVS);
    let c = node.client(true).await;
    c.create_box("crash", Some(8)).await.expect("create box");
    let (src, p) = key_in_partition("src-", 8, |_| true);
    let (dst, _) = key_in_partition("dst-", 8, |q| q != p);
    let (lonely, lp) = key_in_partition("lonely-", 8, |_| true);
    let (nowhere, _) = key_in_partition("nowhere-", 8, |q| q != lp);
    let (reput, rp) = key_in_partition("reput-", 8, |_| true);
    let (reput_dst, _) = key_in_partition("reput-dst-", 8, |q| q != rp);
    let (reput2, rp2) = key_in_partition("reput2-", 8, |_| true);
    let (reput2_dst, _) = key_in_partition("reput2-dst-", 8, |q| q != rp2);
    let old = Bytes::from(pattern(1, 200_000));
    let new = Bytes::from(pattern(2, 150_000));
    for key in [&src, &lonely, &reput, &reput2] {
        c.put_bytes("crash", key, &PutOptions::default(), old.clone()).await.expect("put");
    }

    // 1. Prepare and zero-copy put, then SIGKILL before complete-rename.
    let prepared = c.prepare_rename("crash", &src, &dst).await.expect("prepare");
    c.zero_copy_put("crash", &dst, &prepared.locator, Some(&prepared)).await.expect("zero-copy put");
    // 2. Prepare only: the destination never comes.
    let lonely_prepared = c.prepare_rename("crash", &lonely, &nowhere).await.expect("prepare lonely");
    // 3. A re-put between prepare and complete, completed by the client.
    let p3 = c.prepare_rename("crash", &reput, &reput_dst).await.expect("prepare reput");
    c.zero_copy_put("crash", &reput_dst, &p3.locator, Some(&p3)).await.expect("zero-copy put");
    c.put_bytes("crash", &reput, &PutOptions::default(), new.clone()).await.expect("re-put source");
    assert_eq!(c.complete_rename("crash", &reput, &p3.token).await.expect("complete"), RenameOutcome::SourceChanged);
    // 4. A re-put between prepare and finalize, then SIGKILL: the node's sweep must not delete it.
    let p4 = c.prepare_rename("crash", &reput2, &reput2_dst).await.expect("prepare reput2");
    c.zero_copy_put("crash", &reput2_dst, &p4.locator, Some(&p4)).await.expect("zero-copy put");
    c.put_bytes("crash", &reput2, &PutOptions::default(), new.clone()).await.expect("re-put source 2");
    drop(c);
    node.kill();

    node.restart();
    let c = node.client(true).await;
    eventually(Duration::from_secs(30), "the interrupted rename finalizes after restart", || async {
        absent(&c, &src).await
    })
    .await;
    assert_eq!(bytes_of(&c, &dst).await.as_deref(), Some(&old[..]), "destination present with the source's bytes");

    // The lonely intent is abandoned after the window; its source stays.
    let prepared_at = Instant::now();
    eventually(Duration::from_secs(30), "the lonely intent is abandoned", || async {
        node.metric_sum("candybox_rename_intents_abandoned_total") >= 1.0
    })
    .await;
    assert!(prepared_at.elapsed() < Duration::from_secs(30));
    assert_eq!(bytes_of(&c, &lonely).await.as_deref(), Some(&old[..]), "an abandoned rename's source stays");
    assert!(absent(&c, &nowhere).await);
    // Completing an abandoned rename later never deletes the source.
    let late = c.complete_rename("crash", &lonely, &lonely_prepared.token).await;
    assert!(!matches!(late, Ok(RenameOutcome::Finalized)), "{late:?}");
    assert_eq!(bytes_of(&c, &lonely).await.as_deref(), Some(&old[..]));

    // Re-put sources are never deleted, and the destinations keep the old bytes (both live).
    tokio::time::sleep(Duration::from_secs(2)).await; // several sweeps past the abandon window
    assert_eq!(bytes_of(&c, &reput).await.as_deref(), Some(&new[..]));
    assert_eq!(bytes_of(&c, &reput_dst).await.as_deref(), Some(&old[..]));
    assert_eq!(bytes_of(&c, &reput2).await.as_deref(), Some(&new[..]));
    assert_eq!(bytes_of(&c, &reput2_dst).await.as_deref(), Some(&old[..]));
    eventually(Duration::from_secs(30), "no rename intent is left pending", || async {
        node.metric_sum("candybox_rename_intents_pending") == 0.0
    })
    .await;
}

/// An acknowledged put: key, the seed of its bytes, and the checksum the node reported.
type Acked = (Vec<u8>, u64, u32);

#[tokio::test(flavor = "current_thread")]
async fn acknowledged_puts_survive_sigkill_during_a_storm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(dir.path(), &[], &[]);
    let setup = node.client(true).await;
    setup.create_box("crash", Some(8)).await.expect("create box");

    // Four writers, each with its own client (own connections), each bounded in count and time.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let client = node.client(w % 2 == 0).await;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            for i in 0..5_000u64 {
                if Instant::now() > deadline {
                    break;
                }
                let seed = w * 1_000_000 + i;
                let len = (seed * 7919 % 300_000) as usize;
                let body = Bytes::from(pattern(seed, len));
                let key = format!("storm/{w}/{i:05}").into_bytes();
                match client.put_bytes("crash", &key, &PutOptions::default(), body.clone()).await {
                    Ok(done) => acked.lock().expect("acked").push((key, seed, done.checksum)),
                    Err(_) => break, // the node died under us
                }
            }
        }));
    }
    // Let the storm run, then kill the node in the middle of it.
    eventually(Duration::from_secs(30), "a few hundred puts are acknowledged", || async {
        acked.lock().expect("acked").len() >= 300
    })
    .await;
    node.kill();
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() >= 300);

    node.restart();
    let c = node.client(true).await;
    for (key, seed, checksum) in &acked {
        let (meta, got) = c
            .get_to_vec("crash", key, ByteRange::Whole)
            .await
            .unwrap_or_else(|e| panic!("acknowledged put {} lost after SIGKILL: {e}", String::from_utf8_lossy(key)));
        assert_eq!(meta.checksum, *checksum);
        let len = (seed * 7919 % 300_000) as usize;
        assert!(got == pattern(*seed, len), "{} reads back different bytes", String::from_utf8_lossy(key));
    }
}

/// Story: a relayed rename whose client stalled between prepare-rename and its zero-copy put past
/// the abandon window still wrote its destination, although the source had been released and
/// renamed elsewhere meanwhile: two copies, two renames "succeeded". A rename's destination is now
/// written only while its intent still holds the source.
#[tokio::test(flavor = "current_thread")]
async fn a_rename_abandoned_before_its_destination_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], ENVS);
    let c = node.client(true).await;
    c.create_box("crash", Some(8)).await.expect("create box");
    let (src, p) = key_in_partition("claimed-", 8, |_| true);
    let (late_dst, _) = key_in_partition("late-", 8, |q| q != p);
    let (winner_dst, _) = key_in_partition("winner-", 8, |q| q != p);
    let body = Bytes::from(pattern(9, 50_000));
    c.put_bytes("crash", &src, &PutOptions::default(), body.clone()).await.expect("put");
    let stalled = c.prepare_rename("crash", &src, &late_dst).await.expect("prepare");
    // While the intent holds the source, another rename is refused.
    assert!(matches!(c.rename("crash", &src, &winner_dst).await, Err(ClientError::Conflict { .. })));
    eventually(Duration::from_secs(30), "the stalled rename's intent is abandoned", || async {
        node.metric_sum("candybox_rename_intents_abandoned_total") >= 1.0
    })
    .await;
    c.rename("crash", &src, &winner_dst).await.expect("the source is free again: this rename wins");
    let late = c.zero_copy_put("crash", &late_dst, &stalled.locator, Some(&stalled)).await;
    assert!(matches!(late, Err(ClientError::Conflict { .. })), "{late:?}");
    assert!(absent(&c, &late_dst).await, "the abandoned rename wrote nothing");
    assert!(absent(&c, &src).await);
    assert_eq!(bytes_of(&c, &winner_dst).await.as_deref(), Some(&body[..]));
    assert!(c.complete_rename("crash", &src, &stalled.token).await.is_err());
}
