//! The storage contract of `candybox_core::storage`, written once over `S: Storage` and run
//! against both implementations: `UringStorage` on real files in a temporary directory, and
//! `SimStorage` in memory. The engine is tested on the simulator, so every behaviour it relies on
//! must be the same on both; a difference found here is a simulator bug (or a contract that needs
//! writing down).
//!
//! Durability itself (what survives a crash) cannot be observed on a real file system from inside
//! a test; the simulator's own tests cover it.

use std::{
    future::Future,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use candybox_core::{
    error::IoError,
    runtime::block_on,
    storage::{uring::UringStorage, Storage, StorageFile},
    testing::sim::SimStorage,
};

/// Runs a contract test on real files in a fresh temporary directory.
fn on_uring<F, Fut>(test: F)
where
    F: FnOnce(UringStorage, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("create a temporary directory");
    block_on(test(UringStorage::new(), dir.path().to_path_buf()));
}

/// Runs a contract test on a fresh simulator, rooted at an engine-like absolute path.
fn on_sim<F, Fut>(test: F)
where
    F: FnOnce(SimStorage, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let root = PathBuf::from("/data/contract");
    let sim = SimStorage::new();
    block_on(async {
        sim.create_dir_all(&root).await.expect("create the root directory");
        test(sim, root).await;
    });
}

/// Declares one `#[test]` per contract function and implementation.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test] fn $name() { super::on_uring(super::$name::<super::UringStorage>) })*
        }
        mod sim {
            $(#[test] fn $name() { super::on_sim(super::$name::<super::SimStorage>) })*
        }
    };
}

contract!(
    create_makes_an_empty_file,
    create_is_exclusive,
    write_read_round_trip,
    read_past_end_is_unexpected_eof,
    write_past_end_leaves_a_zero_hole,
    sync_data_keeps_contents,
    open_sees_bytes_written_through_another_handle,
    open_of_missing_file_is_not_found,
    rename_replaces_target,
    rename_of_missing_file_is_not_found,
    remove_then_open_is_not_found,
    removed_file_handle_keeps_working,
    list_names_files_and_directories,
    create_dir_all_creates_parents_and_is_idempotent,
    concurrent_create_dir_all_of_siblings_all_succeed,
    sync_dir_syncs_directories_and_refuses_missing_ones,
    map_of_synced_range_equals_written_bytes,
    removing_a_mapped_file_keeps_the_mapping_readable,
);

/// Bytes that differ at every offset of a page, so a misplaced range cannot compare equal.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The error of an operation that must fail. `Result::expect_err` would need `S::File: Debug`,
/// which the trait does not promise.
fn failure<T>(result: Result<T, IoError>, what: &str) -> IoError {
    match result {
        Ok(_) => panic!("{what}: succeeded, but must fail"),
        Err(e) => e,
    }
}

async fn write_synced<S: Storage>(storage: &S, path: &Path, contents: &[u8]) -> S::File {
    let file = storage.create(path).await.expect("create");
    file.write_at(contents.to_vec(), 0).await.expect("write");
    file.sync_data().await.expect("fdatasync");
    file
}

async fn read_all<F: StorageFile>(file: &F) -> Vec<u8> {
    let len = file.len().await.expect("stat");
    file.read_at(0, usize::try_from(len).expect("length fits usize")).await.expect("read")
}

async fn sorted_list<S: Storage>(storage: &S, dir: &Path) -> Vec<String> {
    let mut names = storage.list(dir).await.expect("list");
    names.sort();
    names
}

async fn create_makes_an_empty_file<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("f");
    let file = storage.create(&path).await.expect("create");
    assert_eq!(file.path(), path.as_path());
    assert_eq!(file.len().await.expect("stat"), 0);
}

async fn create_is_exclusive<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("f");
    write_synced(&storage, &path, b"first").await;
    let err = failure(storage.create(&path).await, "second create of one path");
    assert_eq!(err.source.kind(), ErrorKind::AlreadyExists);
    assert_eq!(err.op, "create");
    assert_eq!(err.path, path);
    // The failed create must not have truncated the existing file.
    let file = storage.open(&path).await.expect("open");
    assert_eq!(read_all(&file).await, b"first");
}

async fn write_read_round_trip<S: Storage>(storage: S, root: PathBuf) {
    let file = storage.create(&root.join("f")).await.expect("create");
    let returned = file.write_at(b"hello".to_vec(), 0).await.expect("write");
    assert_eq!(returned, b"hello");
    file.write_at(b" world".to_vec(), 5).await.expect("write");
    assert_eq!(file.read_at(0, 11).await.expect("read"), b"hello world");
    assert_eq!(file.read_at(6, 5).await.expect("read"), b"world");
    file.write_at(b"J".to_vec(), 0).await.expect("overwrite");
    assert_eq!(file.read_at(0, 5).await.expect("read"), b"Jello");
    assert_eq!(file.len().await.expect("stat"), 11);
}

async fn read_past_end_is_unexpected_eof<S: Storage>(storage: S, root: PathBuf) {
    let file = write_synced(&storage, &root.join("f"), b"12345").await;
    let err = file.read_at(3, 10).await.expect_err("read across the end");
    assert_eq!(err.source.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(err.op, "read");
    let err = file.read_at(5, 1).await.expect_err("read at the end");
    assert_eq!(err.source.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(file.read_at(3, 2).await.expect("read up to the end"), b"45");
}

async fn write_past_end_leaves_a_zero_hole<S: Storage>(storage: S, root: PathBuf) {
    let file = storage.create(&root.join("f")).await.expect("create");
    file.write_at(b"abc".to_vec(), 0).await.expect("write");
    file.write_at(b"xy".to_vec(), 10).await.expect("write past the end");
    assert_eq!(file.len().await.expect("stat"), 12);
    assert_eq!(file.read_at(3, 7).await.expect("read the hole"), vec![0; 7]);
    assert_eq!(file.read_at(10, 2).await.expect("read"), b"xy");
}

async fn sync_data_keeps_contents<S: Storage>(storage: S, root: PathBuf) {
    let data = pattern(10_000);
    let file = write_synced(&storage, &root.join("f"), &data).await;
    file.write_at(b"tail".to_vec(), 10_000).await.expect("write");
    file.sync_data().await.expect("second fdatasync");
    assert_eq!(file.len().await.expect("stat"), 10_004);
    assert_eq!(file.read_at(0, 10_000).await.expect("read"), data);
    assert_eq!(file.read_at(10_000, 4).await.expect("read"), b"tail");
}

async fn open_sees_bytes_written_through_another_handle<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("f");
    let writer = write_synced(&storage, &path, b"abc").await;
    let reader = storage.open(&path).await.expect("open");
    assert_eq!(read_all(&reader).await, b"abc");
    writer.write_at(b"def".to_vec(), 3).await.expect("write");
    assert_eq!(read_all(&reader).await, b"abcdef");
    reader.write_at(b"G".to_vec(), 6).await.expect("write through the opened handle");
    assert_eq!(read_all(&writer).await, b"abcdefG");
}

async fn open_of_missing_file_is_not_found<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("missing");
    let err = failure(storage.open(&path).await, "open of a missing file");
    assert!(err.is_not_found());
    assert_eq!(err.op, "open");
    assert_eq!(err.path, path);
    let err = failure(storage.create(&root.join("no-dir").join("f")).await, "create in a missing dir");
    assert!(err.is_not_found());
}

async fn rename_replaces_target<S: Storage>(storage: S, root: PathBuf) {
    let (from, to) = (root.join("a.tmp"), root.join("a"));
    write_synced(&storage, &to, b"old").await;
    write_synced(&storage, &from, b"new").await;
    storage.rename(&from, &to).await.expect("rename");
    storage.sync_dir(&root).await.expect("fsync dir");
    assert!(failure(storage.open(&from).await, "open of the old name").is_not_found());
    let file = storage.open(&to).await.expect("open");
    assert_eq!(read_all(&file).await, b"new");
    assert_eq!(sorted_list(&storage, &root).await, vec!["a".to_owned()]);
}

async fn rename_of_missing_file_is_not_found<S: Storage>(storage: S, root: PathBuf) {
    let err = storage.rename(&root.join("missing"), &root.join("b")).await.expect_err("rename");
    assert!(err.is_not_found());
    assert_eq!(err.op, "rename");
}

async fn remove_then_open_is_not_found<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("f");
    drop(write_synced(&storage, &path, b"abc").await);
    storage.remove(&path).await.expect("remove");
    assert!(failure(storage.open(&path).await, "open after remove").is_not_found());
    let err = storage.remove(&path).await.expect_err("second remove");
    assert!(err.is_not_found());
    assert_eq!(err.op, "remove");
    assert!(storage.list(&root).await.expect("list").is_empty());
}

async fn removed_file_handle_keeps_working<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("f");
    let file = write_synced(&storage, &path, b"abc").await;
    storage.remove(&path).await.expect("remove");
    file.write_at(b"def".to_vec(), 3).await.expect("write to an unlinked file");
    file.sync_data().await.expect("fdatasync of an unlinked file");
    assert_eq!(read_all(&file).await, b"abcdef");
    // The name is free again, for a new file.
    let again = storage.create(&path).await.expect("create over the removed name");
    assert_eq!(again.len().await.expect("stat"), 0);
}

async fn list_names_files_and_directories<S: Storage>(storage: S, root: PathBuf) {
    assert!(storage.list(&root).await.expect("list").is_empty());
    write_synced(&storage, &root.join("WAL-000001"), b"").await;
    write_synced(&storage, &root.join("CURRENT"), b"").await;
    storage.create_dir_all(&root.join("tables")).await.expect("mkdir");
    assert_eq!(
        sorted_list(&storage, &root).await,
        vec!["CURRENT".to_owned(), "WAL-000001".to_owned(), "tables".to_owned()]
    );
    let err = storage.list(&root.join("missing")).await.expect_err("list of a missing dir");
    assert!(err.is_not_found());
    assert_eq!(err.op, "list");
}

async fn create_dir_all_creates_parents_and_is_idempotent<S: Storage>(storage: S, root: PathBuf) {
    let deep = root.join("partitions").join("box").join("7");
    storage.create_dir_all(&deep).await.expect("mkdir -p");
    storage.create_dir_all(&deep).await.expect("mkdir -p of an existing dir");
    assert_eq!(sorted_list(&storage, &root.join("partitions")).await, vec!["box".to_owned()]);
    assert_eq!(sorted_list(&storage, &root.join("partitions").join("box")).await, vec!["7".to_owned()]);
    write_synced(&storage, &deep.join("f"), b"x").await;
    assert_eq!(sorted_list(&storage, &deep).await, vec!["f".to_owned()]);
    let err = storage.create_dir_all(&deep.join("f")).await.expect_err("mkdir over a file");
    assert_eq!(err.op, "mkdir");
}

/// Regression: two shards opening sibling partitions of a new Box created the shared Box
/// directory at the same time, and one of them failed with EEXIST (monoio's `create_dir_all`
/// checks, then creates).
async fn concurrent_create_dir_all_of_siblings_all_succeed<S: Storage>(storage: S, root: PathBuf) {
    let tasks: Vec<_> = (0..8)
        .map(|p| {
            let (storage, dir) = (storage.clone(), root.join("boxes").join("new-box").join(format!("p{p}")));
            candybox_core::runtime::spawn(async move { storage.create_dir_all(&dir).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("a concurrent mkdir -p of a sibling succeeds");
    }
    let want: Vec<String> = (0..8).map(|p| format!("p{p}")).collect();
    assert_eq!(sorted_list(&storage, &root.join("boxes").join("new-box")).await, want);
}

async fn sync_dir_syncs_directories_and_refuses_missing_ones<S: Storage>(storage: S, root: PathBuf) {
    write_synced(&storage, &root.join("f"), b"abc").await;
    storage.sync_dir(&root).await.expect("fsync dir");
    storage.create_dir_all(&root.join("sub")).await.expect("mkdir");
    storage.sync_dir(&root.join("sub")).await.expect("fsync of an empty dir");
    let err = storage.sync_dir(&root.join("missing")).await.expect_err("fsync of a missing dir");
    assert!(err.is_not_found());
}

async fn map_of_synced_range_equals_written_bytes<S: Storage>(storage: S, root: PathBuf) {
    // Longer than a page, so the unaligned ranges below cross a page boundary.
    let data = pattern(10_000);
    let file = write_synced(&storage, &root.join("f"), &data).await;
    assert_eq!(&file.map(0, data.len()).expect("map the whole file")[..], &data[..]);
    assert_eq!(&file.map(4000, 300).expect("map across a page boundary")[..], &data[4000..4300]);
    assert_eq!(&file.map(9_999, 1).expect("map the last byte")[..], &data[9_999..]);
    assert!(file.map(123, 0).expect("map nothing").is_empty());
}

async fn removing_a_mapped_file_keeps_the_mapping_readable<S: Storage>(storage: S, root: PathBuf) {
    let path = root.join("f");
    let data = pattern(8192);
    let file = write_synced(&storage, &path, &data).await;
    let mapped = file.map(0, data.len()).expect("map");
    drop(file);
    storage.remove(&path).await.expect("remove");
    storage.sync_dir(&root).await.expect("fsync dir");
    assert!(failure(storage.open(&path).await, "open after remove").is_not_found());
    assert_eq!(&mapped[..], &data[..]);
}
