//! `candybox`: the command-line client of a Candybox node.
//!
//! Invariants:
//! - Exit codes: 0 success, 1 a runtime error (the node's or the connection's), 2 a usage error
//!   (clap's own, and argument values this tool refuses).
//! - Errors are one line on stderr: `candybox: <what>: <why>`.
//! - Object bytes stream through in pieces (files, stdin, stdout): nothing buffers a whole file.
//! - Progress bars appear only on a terminal stderr and for transfers over 4 MiB.

mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candybox_wire::client::{
    ByteRange, ClientConfig, Condition, CopyOptions, DeleteKey, Digest, Hlc, KeyRange, ListOptions, MetaReplace,
    PutOptions, ReaderSource, TokioClient, VersionListOptions, VersionPage, Versioning, DELETE_MANY_KEYS_MAX,
    MULTIPART_PART_BYTES_MIN,
};
use clap::{Args, Parser, Subcommand};
use tokio::io::{AsyncRead, AsyncWriteExt};

use output::Out;
use progress::{Counted, Progress};

/// Talk to a Candybox node: Boxes, Candies, listings, copies and renames, multipart uploads.
#[derive(Debug, Parser)]
#[command(name = "candybox", version, max_term_width = 100)]
struct Cli {
    /// The node's main port, HOST:PORT.
    #[arg(long, global = true, env = "CANDYBOX_SERVER", default_value = "127.0.0.1:7420", value_parser = parse_server)]
    server: String,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Send every request to the main port instead of the owning shard's own port.
    #[arg(long, global = true)]
    no_routing: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a Box.
    CreateBox {
        /// The Box's name: 3-63 characters of a-z, 0-9 and '-'.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// Its number of hash partitions, fixed for its life (the node's default is 8).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        partitions: Option<u16>,
        /// Keep every version of every key (enabled), or only one null version per key
        /// (suspended); off by default.
        #[arg(long, value_parser = parse_versioning, default_value = "off")]
        versioning: Versioning,
    },
    /// Settings of a Box.
    #[command(subcommand, name = "box")]
    BoxCmd(BoxCmd),
    /// List the versions and delete markers of a versioned Box, by key, newest first.
    ListVersions {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Continue after this key (with --version-marker: after that version of it).
        #[arg(long)]
        key_marker: Option<String>,
        /// The last version seen of --key-marker.
        #[arg(long, requires = "key_marker", value_parser = parse_version_id)]
        version_marker: Option<Hlc>,
        /// Entries per page.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        max: u32,
        /// Page through everything instead of printing one page.
        #[arg(long)]
        all: bool,
        /// Show each version's user metadata.
        #[arg(long)]
        with_meta: bool,
    },
    /// Delete a Box (only an empty one, unless --force).
    DeleteBox {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// Delete it with all its Candies.
        #[arg(long)]
        force: bool,
    },
    /// Describe a Box.
    HeadBox {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
    },
    /// List every Box.
    ListBoxes,
    /// Store a Candy from a file or stdin.
    Put {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The Candy's key.
        key: String,
        /// The file to upload; stdin when '-' or absent.
        file: Option<PathBuf>,
        #[command(flatten)]
        meta: MetaArgs,
        #[command(flatten)]
        condition: ConditionArgs,
        /// Compute this digest while uploading and store it with the object (as user metadata
        /// `digest-KIND`, lowercase hex): md5, crc32, crc32c, sha1 or sha256; repeat for more.
        #[arg(long = "digest", value_name = "KIND", value_parser = parse_digest)]
        digests: Vec<Digest>,
        /// Upload as a multipart upload (for big files; parts are sent one after another; the
        /// condition and digests go with its completion).
        #[arg(long)]
        multipart: bool,
        /// Part size of --multipart, e.g. 8MiB, 5MB, 6000000 (at least 5 MiB unless the node
        /// allows less).
        #[arg(long, value_parser = parse_size, default_value = "8MiB", requires = "multipart")]
        part_size: u64,
    },
    /// Fetch a Candy's bytes (or a range of them) to stdout or a file.
    Get {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The Candy's key.
        key: String,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only these bytes: FIRST-LAST (inclusive), FIRST- (to the end) or -N (the last N).
        #[arg(long, value_parser = parse_range, allow_hyphen_values = true)]
        range: Option<ByteRange>,
        /// This version instead of the current one (as list-versions prints it; `null`: the
        /// null version).
        #[arg(long, value_parser = parse_version_id)]
        version_id: Option<Hlc>,
    },
    /// Show a Candy's metadata.
    Head {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The Candy's key.
        key: String,
        /// This version instead of the current one.
        #[arg(long, value_parser = parse_version_id)]
        version_id: Option<Hlc>,
    },
    /// Delete Candies (deleting an absent key succeeds, unless a condition says otherwise).
    /// Several keys go in one request (at most 1,000); the exit code is 1 when any failed.
    Delete {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The Candies' keys.
        #[arg(required = true, num_args = 1..)]
        keys: Vec<String>,
        /// A condition on the key (one key only).
        #[command(flatten)]
        condition: ConditionArgs,
        /// Delete this version for good (one key only; a delete marker too) instead of the key,
        /// which in a versioned Box writes a delete marker.
        #[arg(long, value_parser = parse_version_id, conflicts_with_all = ["if_match", "if_none_match", "if_unmodified_since"])]
        version_id: Option<Hlc>,
    },
    /// Replace a Candy's content type and user metadata in place (no byte of it moves; a new
    /// version).
    SetMeta {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The Candy's key.
        key: String,
        /// The new metadata (both replace: absent ones become empty).
        #[command(flatten)]
        meta: MetaArgs,
        #[command(flatten)]
        condition: ConditionArgs,
    },
    /// List Candies in key order, merged over every partition of the Box.
    List {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only keys >= this.
        #[arg(long)]
        start: Option<String>,
        /// Only keys < this.
        #[arg(long)]
        end: Option<String>,
        /// Descending key order.
        #[arg(long)]
        reverse: bool,
        /// Continue after this key (the cursor printed by the previous page).
        #[arg(long)]
        start_after: Option<String>,
        /// Entries per page.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        max: u32,
        /// Page through everything instead of printing one page.
        #[arg(long)]
        all: bool,
        /// Show each entry's user metadata (digests included).
        #[arg(long)]
        with_meta: bool,
    },
    /// Delete every key with a prefix, or in [start, end), with one range tombstone per partition.
    #[command(group(clap::ArgGroup::new("range").required(true).args(["prefix", "start"])))]
    DeleteRange {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// Every key starting with this.
        #[arg(long, conflicts_with_all = ["start", "end"])]
        prefix: Option<String>,
        /// The first key deleted.
        #[arg(long, requires = "end")]
        start: Option<String>,
        /// The first key kept after the range.
        #[arg(long, requires = "start")]
        end: Option<String>,
    },
    /// Copy a Candy to another key without moving its bytes.
    Copy(MoveArgs),
    /// Rename a Candy without moving its bytes.
    Rename(MoveArgs),
    /// Multipart uploads, step by step.
    #[command(subcommand)]
    Multipart(Multipart),
    /// Every shard's counters.
    Stats,
    /// The node's shards, ports and placement function.
    Topology,
}

#[derive(Debug, Args)]
struct MetaArgs {
    /// The content type to store, e.g. image/jpeg.
    #[arg(long)]
    content_type: Option<String>,
    /// User metadata as KEY=VALUE; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
}

impl MoveArgs {
    /// The copy (or rename) run by the node in one request, with the target's condition.
    async fn node_run(&self, client: &TokioClient, rename: bool) -> Result<(), candybox_wire::client::ClientError> {
        let (source, target) = (self.source.as_bytes(), self.target.as_bytes());
        client.copy_or_rename_if(&self.box_name, source, target, rename, &self.options()).await.map(drop)
    }

    /// The target's condition and metadata replacement.
    fn options(&self) -> CopyOptions {
        let replace = self
            .replace_meta
            .then(|| MetaReplace { content_type: self.meta.content_type.clone(), user_meta: self.meta.meta.clone() });
        CopyOptions { condition: self.condition.condition(), replace, source_version: self.source_version }
    }
}

/// A condition on the key, checked by the node when the write joins its commit queue: of
/// writers racing on one key, at most one meets a condition the other's write breaks. A failed
/// condition writes nothing and exits 1 with `precondition failed` and the key's current version.
#[derive(Debug, Args)]
#[group(multiple = false)]
struct ConditionArgs {
    /// Only if the key's current version is VERSION (as put, head and list print it:
    /// physical_ms.logical@node), or its content digest is KIND:HEX (a digest stored with
    /// --digest, e.g. md5:9e107d9d372bb6826bd81d3542a419d6).
    #[arg(long, value_name = "VERSION|KIND:HEX", value_parser = parse_if_match)]
    if_match: Option<Condition>,
    /// Only if no object is under the key: the value must be '*'.
    #[arg(long, value_name = "*", value_parser = parse_if_none_match)]
    if_none_match: Option<()>,
    /// Only if the object under the key was last written at or before this time (milliseconds
    /// since the Unix epoch).
    #[arg(long, value_name = "MS")]
    if_unmodified_since: Option<u64>,
}

impl ConditionArgs {
    fn condition(&self) -> Option<Condition> {
        if let Some(c) = &self.if_match {
            Some(c.clone())
        } else if self.if_none_match.is_some() {
            Some(Condition::IfAbsent)
        } else {
            self.if_unmodified_since.map(Condition::IfUnmodifiedSince)
        }
    }
}

fn parse_if_match(s: &str) -> Result<Condition, String> {
    if s.contains('@') || s == "null" {
        return parse_version_id(s).map(Condition::IfVersion);
    }
    if s.contains('@') {
        return s.parse::<Hlc>().map(Condition::IfVersion);
    }
    let Some((kind, hex)) = s.split_once(':') else {
        return Err(format!("`{s}` is neither a version (physical_ms.logical@node) nor a digest (KIND:HEX)"));
    };
    let kind = parse_digest(kind)?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{hex}` is not a hex digest"));
    }
    Ok(kind.condition(hex))
}

fn parse_digest(s: &str) -> Result<Digest, String> {
    s.parse()
}

fn parse_if_none_match(s: &str) -> Result<(), String> {
    if s == "*" {
        Ok(())
    } else {
        Err(format!("`{s}`: only '*' (no object under the key) is supported"))
    }
}

#[derive(Debug, Args)]
struct MoveArgs {
    /// The Box.
    #[arg(value_name = "BOX")]
    box_name: String,
    /// The source key.
    source: String,
    /// The target key.
    target: String,
    /// Let this client relay the locator between partitions (get-locator or prepare-rename,
    /// zero-copy-put, complete-rename) instead of asking the node to do it in one request.
    #[arg(long)]
    relay: bool,
    /// A condition on the target key (a refused rename keeps its source).
    #[command(flatten)]
    condition: ConditionArgs,
    /// Give the target the --content-type and --meta here instead of the source's metadata
    /// (S3's REPLACE directive; absent ones become empty).
    #[arg(long)]
    replace_meta: bool,
    /// The target's metadata, with --replace-meta.
    #[command(flatten)]
    meta: MetaArgs,
    /// Copy this version of the source (a copy only, run by the node).
    #[arg(long, value_parser = parse_version_id, conflicts_with = "relay")]
    source_version: Option<Hlc>,
}

#[derive(Debug, Subcommand)]
enum BoxCmd {
    /// Turn a Box's versioning on (enable) or suspend it (a versioned Box is never off again).
    Versioning {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// enable or suspend.
        #[arg(value_parser = ["enable", "suspend"])]
        state: String,
    },
}

fn parse_versioning(s: &str) -> Result<Versioning, String> {
    match s {
        "off" => Ok(Versioning::Off),
        "enabled" | "enable" => Ok(Versioning::Enabled),
        "suspended" | "suspend" => Ok(Versioning::Suspended),
        _ => Err(format!("`{s}`: one of off, enabled, suspended")),
    }
}

/// A version id as list-versions prints it (`physical_ms.logical@node`), or `null`.
fn parse_version_id(s: &str) -> Result<Hlc, String> {
    if s == "null" {
        return Ok(Hlc::ZERO);
    }
    s.parse()
}

#[derive(Debug, Subcommand)]
enum Multipart {
    /// Start an upload; prints its id.
    Create {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The key it completes to.
        key: String,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Upload one part from a file or stdin.
    UploadPart {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The upload's key.
        key: String,
        /// The upload's id.
        upload_id: u64,
        /// The part's number, from 1.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000))]
        part_number: u32,
        /// The file holding the part; stdin when '-' or absent.
        file: Option<PathBuf>,
    },
    /// Complete an upload from its parts, in the order given.
    Complete {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The upload's key.
        key: String,
        /// The upload's id.
        upload_id: u64,
        /// The part numbers, in order.
        #[arg(required = true, num_args = 1..)]
        part_numbers: Vec<u32>,
    },
    /// Abort an upload and drop its parts.
    Abort {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The upload's key.
        key: String,
        /// The upload's id.
        upload_id: u64,
    },
    /// List the uploads in progress in a Box.
    ListUploads {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
    },
    /// List the parts uploaded so far.
    ListParts {
        /// The Box.
        #[arg(value_name = "BOX")]
        box_name: String,
        /// The upload's key.
        key: String,
        /// The upload's id.
        upload_id: u64,
    },
}

fn parse_server(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!("`{s}` is not HOST:PORT")),
    }
}

fn parse_range(s: &str) -> Result<ByteRange, String> {
    s.parse::<ByteRange>().map_err(|e| e.to_string())
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Parses `123`, `5MiB`, `5M`, `5MB`, `64KiB`, `1GiB` (binary multiples for every suffix).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size like 8MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{s}` has an unknown unit (use KiB, MiB or GiB)")),
    };
    let size = n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))?;
    if size == 0 {
        return Err("a size must be positive".to_owned());
    }
    Ok(size)
}

/// Refuses argument combinations clap cannot express, as clap refuses its own (exit code 2).
fn check_usage(cli: &Cli) {
    use clap::{error::ErrorKind, CommandFactory};
    let refuse = |msg: &str| Cli::command().error(ErrorKind::ArgumentConflict, msg).exit();
    match &cli.command {
        Command::Delete { keys, condition, .. } if keys.len() > 1 && condition.condition().is_some() => {
            refuse("a condition (--if-match, --if-none-match, --if-unmodified-since) applies to one key only")
        }
        Command::Delete { keys, version_id: Some(_), .. } if keys.len() > 1 => {
            refuse("--version-id applies to one key only")
        }
        Command::Rename(m) if m.source_version.is_some() => {
            refuse("--source-version is for copy: a rename moves the current version")
        }
        Command::Copy(m) | Command::Rename(m)
            if !m.replace_meta && (m.meta.content_type.is_some() || !m.meta.meta.is_empty()) =>
        {
            refuse("--content-type and --meta give the target new metadata only with --replace-meta")
        }
        _ => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    check_usage(&cli);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("candybox: start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `candybox list … | head`: the reader has what it wanted.
        Err(e) if output::stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("candybox: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn connect(cli: &Cli) -> Result<TokioClient> {
    let mut config = ClientConfig::new(cli.server.clone());
    config.routing = !cli.no_routing;
    // The error already names the address.
    Ok(TokioClient::connect(config).await?)
}

async fn run(cli: Cli) -> Result<()> {
    let client = connect(&cli).await?;
    let out = Out::new(cli.json);
    match cli.command {
        Command::CreateBox { box_name, partitions, versioning } => {
            let info = client
                .create_box_with(&box_name, partitions, versioning)
                .await
                .with_context(|| format!("create box {box_name}"))?;
            out.box_info(&info);
        }
        Command::BoxCmd(BoxCmd::Versioning { box_name, state }) => {
            let v = if state == "enable" { Versioning::Enabled } else { Versioning::Suspended };
            let info = client
                .set_versioning(&box_name, v)
                .await
                .with_context(|| format!("set the versioning of box {box_name}"))?;
            out.box_info(&info);
        }
        Command::ListVersions { box_name, prefix, key_marker, version_marker, max, all, with_meta } => {
            let mut options = VersionListOptions {
                prefix: prefix.map(String::into_bytes),
                key_marker: key_marker.map(String::into_bytes),
                version_marker,
                limit: max,
                with_meta,
            };
            loop {
                let page = client
                    .list_versions(&box_name, &options)
                    .await
                    .with_context(|| format!("list versions of {box_name}"))?;
                match (&page.next, all) {
                    (Some((k, v)), true) => {
                        out.versions(&VersionPage { entries: page.entries, next: None });
                        options.key_marker = Some(k.clone());
                        options.version_marker = Some(*v);
                    }
                    _ => {
                        out.versions(&page);
                        break;
                    }
                }
            }
        }
        Command::DeleteBox { box_name, force } => {
            client.delete_box(&box_name, force).await.with_context(|| format!("delete box {box_name}"))?;
            out.done(&format!("deleted box {box_name}"));
        }
        Command::HeadBox { box_name } => {
            let info = client.head_box(&box_name).await.with_context(|| format!("head box {box_name}"))?;
            out.box_info(&info);
        }
        Command::ListBoxes => {
            let boxes = client.list_boxes().await.context("list boxes")?;
            out.box_list(&boxes);
        }
        Command::Put { box_name, key, file, meta, condition, digests, multipart, part_size } => {
            let what = format!("put {box_name}/{key}");
            let (reader, size) = open_input(file.as_deref()).await.with_context(|| what.clone())?;
            let options = PutOptions {
                content_type: meta.content_type,
                user_meta: meta.meta,
                size,
                condition: condition.condition(),
                digests,
            };
            let progress = Progress::new(size, &what);
            if multipart {
                // Only a part that is not the last must meet the node's minimum: warn only when
                // the size is known to need more than one part (the node has the last word; its
                // minimum is a setting).
                if part_size < MULTIPART_PART_BYTES_MIN && size.is_some_and(|s| s > part_size) {
                    eprintln!(
                        "candybox: note: this upload has parts under 5 MiB before its last; a node with the default minimum refuses it at completion"
                    );
                }
                let source = ReaderSource::new(reader);
                let done = client
                    .put_multipart(&box_name, key.as_bytes(), &options, part_size, source, |n| progress.add(n))
                    .await
                    .with_context(|| what.clone())?;
                progress.finish();
                out.put_done(&box_name, &key, done.as_ref());
            } else {
                let source = Counted::new(ReaderSource::new(reader), &progress);
                let done =
                    client.put(&box_name, key.as_bytes(), &options, source).await.with_context(|| what.clone())?;
                progress.finish();
                out.put_done(&box_name, &key, Some(&done));
            }
        }
        Command::Get { box_name, key, output, range, version_id } => {
            let what = format!("get {box_name}/{key}");
            get(&client, &box_name, &key, output, range.unwrap_or_default(), version_id).await.with_context(|| what)?;
        }
        Command::Head { box_name, key, version_id } => {
            let what = format!("head {box_name}/{key}");
            let meta = match version_id {
                None => client.head(&box_name, key.as_bytes()).await,
                Some(v) => client.head_version(&box_name, key.as_bytes(), v).await,
            }
            .with_context(|| what)?;
            out.candy_meta(&key, &meta);
        }
        Command::Delete { box_name, keys, condition, version_id } => {
            let condition = condition.condition();
            if let [key] = keys.as_slice() {
                let what = format!("delete {box_name}/{key}");
                let done = match version_id {
                    Some(v) => client.delete_version(&box_name, key.as_bytes(), v).await,
                    None => client.delete_marked(&box_name, key.as_bytes(), condition.as_ref()).await,
                }
                .with_context(|| what)?;
                out.deleted(&box_name, key, &done);
                return Ok(());
            }
            let mut failed = 0;
            for chunk in keys.chunks(DELETE_MANY_KEYS_MAX) {
                let batch: Vec<DeleteKey> = chunk.iter().map(|k| DeleteKey::new(k.clone().into_bytes())).collect();
                let outcomes =
                    client.delete_many(&box_name, &batch).await.with_context(|| format!("delete in {box_name}"))?;
                if !out.deleted_many(&box_name, &outcomes) {
                    failed += outcomes.iter().filter(|o| o.result.is_err()).count();
                }
            }
            if failed > 0 {
                anyhow::bail!("delete in {box_name}: {failed} of {} keys were not deleted", keys.len());
            }
        }
        Command::SetMeta { box_name, key, meta, condition } => {
            let replace = MetaReplace { content_type: meta.content_type, user_meta: meta.meta };
            let done = client
                .set_meta(&box_name, key.as_bytes(), &replace, condition.condition().as_ref())
                .await
                .with_context(|| format!("set-meta {box_name}/{key}"))?;
            out.put_done(&box_name, &key, done.as_ref());
        }
        Command::List { box_name, prefix, start, end, reverse, start_after, max, all, with_meta } => {
            let mut options = ListOptions {
                prefix: prefix.map(String::into_bytes),
                start: start.map(String::into_bytes),
                end: end.map(String::into_bytes),
                start_after: start_after.map(String::into_bytes),
                reverse,
                limit: max,
                with_meta,
            };
            let what = format!("list {box_name}");
            let mut lister = out.lister(all);
            loop {
                let page = client.list(&box_name, &options).await.with_context(|| what.clone())?;
                lister.page(&page)?;
                match (&page.next_start_after, all) {
                    (Some(cursor), true) => options.start_after = Some(cursor.clone()),
                    _ => break,
                }
            }
            lister.finish()?;
        }
        Command::DeleteRange { box_name, prefix, start, end } => {
            let range = match (prefix, start, end) {
                (Some(p), _, _) => KeyRange::Prefix(p.into_bytes()),
                (None, Some(start), Some(end)) => {
                    KeyRange::Between { start: start.into_bytes(), end: end.into_bytes() }
                }
                _ => unreachable!("clap requires --prefix or --start with --end"),
            };
            client.delete_range(&box_name, &range).await.with_context(|| format!("delete range in {box_name}"))?;
            out.done(&format!("deleted the range in every partition of {box_name}"));
        }
        Command::Copy(m) => {
            let what = format!("copy {}/{} to {}", m.box_name, m.source, m.target);
            if m.relay {
                client
                    .relay_copy_with(&m.box_name, m.source.as_bytes(), m.target.as_bytes(), &m.options())
                    .await
                    .with_context(|| what)?;
            } else {
                m.node_run(&client, false).await.with_context(|| what)?;
            }
            out.moved("copied", &m.source, &m.target, None);
        }
        Command::Rename(m) => {
            let what = format!("rename {}/{} to {}", m.box_name, m.source, m.target);
            let outcome = if m.relay {
                Some(
                    client
                        .relay_rename_with(&m.box_name, m.source.as_bytes(), m.target.as_bytes(), &m.options())
                        .await
                        .with_context(|| what)?,
                )
            } else {
                m.node_run(&client, true).await.with_context(|| what)?;
                None
            };
            out.moved("renamed", &m.source, &m.target, outcome);
        }
        Command::Multipart(cmd) => multipart(&client, &out, cmd).await?,
        Command::Stats => {
            let stats = client.stats().await.context("stats")?;
            out.stats(&stats);
        }
        Command::Topology => {
            let topology = client.topology().await.context("topology")?;
            out.topology(&topology, client.routing_off_reason());
        }
    }
    Ok(())
}

async fn multipart(client: &TokioClient, out: &Out, cmd: Multipart) -> Result<()> {
    match cmd {
        Multipart::Create { box_name, key, meta } => {
            let options = PutOptions { content_type: meta.content_type, user_meta: meta.meta, ..PutOptions::default() };
            let id = client
                .create_upload(&box_name, key.as_bytes(), &options)
                .await
                .with_context(|| format!("create upload {box_name}/{key}"))?;
            out.upload_created(&key, id);
        }
        Multipart::UploadPart { box_name, key, upload_id, part_number, file } => {
            let what = format!("upload part {part_number} of {box_name}/{key} upload {upload_id}");
            let (reader, size) = open_input(file.as_deref()).await.with_context(|| what.clone())?;
            let progress = Progress::new(size, &what);
            let source = Counted::new(ReaderSource::new(reader), &progress);
            let part = client
                .upload_part(&box_name, key.as_bytes(), upload_id, part_number, size, source)
                .await
                .with_context(|| what)?;
            progress.finish();
            out.part(&part);
        }
        Multipart::Complete { box_name, key, upload_id, part_numbers } => {
            let done = client
                .complete_upload(&box_name, key.as_bytes(), upload_id, &part_numbers)
                .await
                .with_context(|| format!("complete upload {upload_id} of {box_name}/{key}"))?;
            out.put_done(&box_name, &key, done.as_ref());
        }
        Multipart::Abort { box_name, key, upload_id } => {
            client
                .abort_upload(&box_name, key.as_bytes(), upload_id)
                .await
                .with_context(|| format!("abort upload {upload_id} of {box_name}/{key}"))?;
            out.done(&format!("aborted upload {upload_id} of {box_name}/{key}"));
        }
        Multipart::ListUploads { box_name } => {
            let uploads =
                client.list_uploads(&box_name).await.with_context(|| format!("list uploads of {box_name}"))?;
            out.uploads(&uploads);
        }
        Multipart::ListParts { box_name, key, upload_id } => {
            let parts = client
                .list_parts(&box_name, key.as_bytes(), upload_id)
                .await
                .with_context(|| format!("list parts of upload {upload_id} of {box_name}/{key}"))?;
            out.parts(&parts);
        }
    }
    Ok(())
}

/// A file (with its size) or stdin (size unknown).
async fn open_input(file: Option<&std::path::Path>) -> Result<(Box<dyn AsyncRead + Unpin>, Option<u64>)> {
    match file {
        None => Ok((Box::new(tokio::io::stdin()), None)),
        Some(p) if p.as_os_str() == "-" => Ok((Box::new(tokio::io::stdin()), None)),
        Some(p) => {
            let f = tokio::fs::File::open(p).await.with_context(|| format!("open {}", p.display()))?;
            let size = f.metadata().await.with_context(|| format!("stat {}", p.display()))?.len();
            Ok((Box::new(f), Some(size)))
        }
    }
}

async fn get(
    client: &TokioClient,
    box_name: &str,
    key: &str,
    output: Option<PathBuf>,
    range: ByteRange,
    version: Option<Hlc>,
) -> Result<()> {
    let mut stream = client.get_version(box_name, key.as_bytes(), range, version).await?;
    let progress = Progress::new(Some(stream.length()), &format!("get {box_name}/{key}"));
    match output {
        None => {
            let mut stdout = tokio::io::stdout();
            while let Some(piece) = stream.next_piece().await? {
                progress.add(piece.len() as u64);
                stdout.write_all(&piece).await.context("write to stdout")?;
            }
            stdout.flush().await.context("write to stdout")?;
        }
        Some(path) => {
            let mut file =
                tokio::fs::File::create(&path).await.with_context(|| format!("create {}", path.display()))?;
            let result: Result<()> = async {
                while let Some(piece) = stream.next_piece().await? {
                    progress.add(piece.len() as u64);
                    file.write_all(&piece).await.with_context(|| format!("write {}", path.display()))?;
                }
                file.flush().await.with_context(|| format!("write {}", path.display()))?;
                file.sync_all().await.with_context(|| format!("sync {}", path.display()))?;
                Ok(())
            }
            .await;
            if result.is_err() {
                // A partial file would pass for the Candy.
                let _ = tokio::fs::remove_file(&path).await;
            }
            result?;
        }
    }
    progress.finish();
    Ok(())
}
