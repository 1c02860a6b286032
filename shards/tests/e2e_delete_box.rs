//! Regression (both tests): delete-box checked each partition for emptiness one after another and then
//! deleted the Box, so a put acknowledged into an already-checked partition in between was lost
//! with the Box. The node now fences the Box on every shard (new operations get `Busy`, running
//! ones finish) before it checks, so a delete-box racing with puts is refused and every
//! acknowledged put stays readable.

mod harness;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, PutOptions};
use harness::{eventually, pattern, Node};

#[tokio::test(flavor = "current_thread")]
async fn delete_box_racing_with_a_put_never_loses_an_acknowledged_put() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let (admin, writer) = (node.client(true).await, node.client(true).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut put_won, mut delete_won) = (0, 0);
    for trial in 0..150u64 {
        if Instant::now() > deadline {
            break;
        }
        let name = format!("race-{trial}");
        admin.create_box(&name, Some(8)).await.expect("create box");
        let key = format!("k{trial}").into_bytes();
        let body = Bytes::from(pattern(trial, 64));
        let (deleted, put) = tokio::join!(admin.delete_box(&name, false), async {
            // Land the put somewhere inside the delete's work.
            tokio::time::sleep(Duration::from_micros(trial % 7 * 150)).await;
            writer.put_bytes(&name, &key, &PutOptions::default(), body.clone()).await
        });
        match (&deleted, &put) {
            (Ok(()), Ok(_)) => {
                panic!("trial {trial}: the put was acknowledged and the delete-box of its box succeeded")
            }
            (Err(ClientError::BoxNotEmpty { .. } | ClientError::Busy { .. }), Ok(_)) => {
                put_won += 1;
                let (_, got) =
                    admin.get_to_vec(&name, &key, ByteRange::Whole).await.expect("acknowledged put readable");
                assert!(got == body);
                admin.delete_box(&name, true).await.expect("forced delete");
            }
            (Ok(()), Err(ClientError::BoxNotFound { .. } | ClientError::Busy { .. })) => delete_won += 1,
            other => panic!("trial {trial}: unexpected outcome {other:?}"),
        }
    }
    assert!(put_won + delete_won >= 20, "enough trials ran ({put_won} + {delete_won})");
}

#[tokio::test(flavor = "current_thread")]
async fn delete_box_racing_with_puts_never_loses_an_acknowledged_put() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path(), &[], &[]);
    let admin = node.client(true).await;
    admin.create_box("racing", Some(8)).await.expect("create box");

    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (client, acked, stop) = (node.client(w % 2 == 0).await, acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..20_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{w}/{i:05}").into_bytes();
                let body = Bytes::from(pattern(w * 100_000 + i, 64));
                match client.put_bytes("racing", &key, &PutOptions::default(), body).await {
                    Ok(_) => acked.lock().expect("acked").push(key),
                    // Only while a delete holds its fence (the client retries Busy a few times).
                    Err(ClientError::Busy { .. }) => {}
                    Err(e) => panic!("put failed: {e}"),
                }
            }
        }));
    }
    eventually(Duration::from_secs(20), "puts are being acknowledged", || async {
        !acked.lock().expect("acked").is_empty()
    })
    .await;

    // The Box holds acknowledged Candies from now on, so every delete must be refused.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut refused = 0;
    while Instant::now() < deadline && refused < 200 {
        match admin.delete_box("racing", false).await {
            Err(ClientError::BoxNotEmpty { .. } | ClientError::Busy { .. }) => refused += 1,
            Ok(()) => {
                panic!("delete-box of a box with {} acknowledged puts succeeded", acked.lock().expect("acked").len())
            }
            Err(e) => panic!("delete-box failed unexpectedly: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    assert!(refused > 10, "the deletes raced with the puts ({refused} attempts)");
    let acked = acked.lock().expect("acked").clone();
    for key in &acked {
        admin
            .get_to_vec("racing", key, ByteRange::Whole)
            .await
            .unwrap_or_else(|e| panic!("acknowledged put {} unreadable: {e}", String::from_utf8_lossy(key)));
    }
    // Once the writers stopped, a forced delete goes through.
    admin.delete_box("racing", true).await.expect("forced delete");
    assert!(matches!(admin.head_box("racing").await, Err(ClientError::BoxNotFound { .. })));
}
