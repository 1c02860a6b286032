//! A full disk is a state, not a failure, on a real node: on a small tmpfs (mounted by the test,
//! unmounted after) filled with puts, the failing put gets a typed `NoSpace` without server paths,
//! every acknowledged object still reads back, deletes work, `/readyz` and `candybox_disk_full`
//! say so, writes resume by themselves once space is freed, and the node starts again on a disk
//! that is completely full.
//!
//! Story: on a 300 MiB file system filled with 4 MiB puts, the failing put said `internal error
//! on the node: write <path>/syrups/<id>.syrup: No space left on device`; three of eight
//! partitions stopped and refused gets of acknowledged objects; deleting objects to make room
//! stopped the other five; `/readyz` still said ready while the log repeated two warnings per
//! second per partition; a restart on the full disk exited 1.

mod harness;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, PutOptions, TokioClient};
use harness::{eventually, pattern, Node};

const MIB: u64 = 1024 * 1024;

/// A tmpfs of a given size, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "the disk-full test mounts a small tmpfs and needs root: run it as root (CI and ./scripts/test.sh do)"
        );
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={}k", bytes / 1024), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount (util-linux)");
        assert!(status.success(), "mount a {bytes}-byte tmpfs at {}: {status}", path.display());
        Tmpfs { path: path.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The disk settings under test, on top of eager reclamation.
const ARGS: &[&str] =
    &["--disk-free-min-bytes", "8388608", "--disk-ballast-bytes", "2097152", "--syrup-compact-bytes-min", "1048576"];

/// Puts 1 MiB objects until the node refuses one; returns the acknowledged ones.
async fn fill(c: &TokioClient, prefix: &str) -> Vec<(String, Bytes)> {
    let mut acked = Vec::new();
    for i in 0..200u64 {
        let key = format!("{prefix}{i}");
        let body = Bytes::from(pattern(i + 7, MIB as usize));
        match c.put_bytes("full", key.as_bytes(), &PutOptions::default(), body.clone()).await {
            Ok(_) => acked.push((key, body)),
            Err(ClientError::NoSpace { message }) => {
                assert!(!message.contains("/"), "no server paths: {message}");
                return acked;
            }
            Err(e) => panic!("a put on a full disk must get NoSpace, got: {e}"),
        }
    }
    panic!("200 MiB of puts never filled a 48 MiB file system");
}

async fn all_read_back(c: &TokioClient, acked: &[(String, Bytes)]) {
    for (key, body) in acked {
        let (_, got) =
            c.get_to_vec("full", key.as_bytes(), ByteRange::Whole).await.expect("an acknowledged object reads");
        assert_eq!(&got[..], &body[..], "{key}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_disk_refuses_writes_keeps_reads_and_deletes_and_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _fs = Tmpfs::mount(&dir.path().join("data"), 48 * MIB);
    let mut node = Node::start(dir.path(), &harness::args_with(harness::EAGER_RECLAIM_ARGS, ARGS), &[]);
    let c = node.client(true).await;
    c.create_box("full", Some(4)).await.expect("create box");

    let acked = fill(&c, "a-").await;
    assert!(acked.len() >= 20, "only {} puts fit", acked.len());
    all_read_back(&c, &acked).await;
    eventually(Duration::from_secs(10), "/readyz and the gauge say the disk is full", || async {
        let (status, body) = node.http_get("/readyz");
        status == 503 && body.contains("disk full") && node.metric_sum("candybox_disk_full") == 1.0
    })
    .await;
    assert!(node.metric_sum("candybox_nospace_refusals_total") >= 1.0);

    // Deletes work on the full disk, and writes resume by themselves once GC gave space back.
    for (key, _) in acked.iter().step_by(2) {
        c.delete("full", key.as_bytes()).await.expect("delete on a full disk");
    }
    eventually(Duration::from_secs(60), "the disk leaves the full state", || async {
        node.metric_sum("candybox_disk_full") == 0.0
    })
    .await;
    c.put_bytes("full", b"after", &PutOptions::default(), Bytes::from_static(b"resumed")).await.expect("put resumes");
    let kept: Vec<_> = acked.iter().skip(1).step_by(2).cloned().collect();
    all_read_back(&c, &kept).await;
    // The ballast is allocated again once there is room.
    let ballast = node.data_dir.join("BALLAST");
    eventually(Duration::from_secs(10), "the ballast file is back", || async { ballast.exists() }).await;

    // Fill the file system completely from outside, SIGKILL, restart: the node starts (the
    // ballast makes room for recovery) and serves reads.
    drop(c);
    node.kill();
    let filler = node.data_dir.join("filler");
    let _ = Command::new("dd").args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=1M"]).output();
    assert!(harness_free(&node.data_dir) < MIB, "the file system is full");
    node.restart();
    let c = node.client(true).await;
    all_read_back(&c, &kept).await;
    let refused = c.put_bytes("full", b"more", &PutOptions::default(), Bytes::from(vec![1u8; MIB as usize])).await;
    assert!(matches!(refused, Err(ClientError::NoSpace { .. })), "{refused:?}");
    c.delete("full", kept[0].0.as_bytes()).await.expect("delete on a completely full disk");
    std::fs::remove_file(&filler).expect("free the space");
    eventually(Duration::from_secs(30), "writes resume once the filler is gone", || async {
        c.put_bytes("full", b"more", &PutOptions::default(), Bytes::from(vec![1u8; MIB as usize])).await.is_ok()
    })
    .await;
    drop(c);
    assert!(node.terminate().success());
}

fn harness_free(dir: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().expect("df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(u64::MAX)
}
