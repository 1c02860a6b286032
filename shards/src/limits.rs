//! Bounds of every queue and buffer of the node (the engine's own live in `core::limits`).
//!
//! Memory a connection may pin, term by term (frame cap F, in-flight cap R):
//! `READ_BUFFER_BYTES` (its read buffer) `+ F` (a frame larger than that, being read)
//! `+ R × BODY_PIECES_MAX × F` (version 1: put bodies queued towards engines; version 2 bounds
//! each body by its credit window, `STREAM_WINDOW_BYTES`) `+ OUTPUT_HIGH_BYTES` (replies queued
//! for the writer, plus at most one frame each request appends past it; get payloads are mapped
//! Syrup slices, not copies). Every frame that leaves the read buffer also counts against the
//! node-wide `frame_memory_bytes_max` budget, reserved before its body is read and released when
//! its bytes are dropped; its buffer grows only as bytes arrive.

/// Most shards of one node.
pub const SHARDS_MAX: u16 = 256;
/// Pieces of one streamed put body queued between the connection and the engine.
pub const BODY_PIECES_MAX: usize = 2;
/// Reply bytes queued per connection for its writer (get payloads from Syrup mappings count,
/// though they are not copied): at this much the connection reads no more requests and its
/// streaming gets wait.
pub const OUTPUT_HIGH_BYTES: usize = 4 * 1024 * 1024;
/// Requests queued for the control thread (coordination).
pub const COORD_QUEUE_MAX: usize = 1024;
/// Payload bytes gathered into one data frame of a get (also capped by the frame cap).
pub const GET_FRAME_PAYLOAD_BYTES: usize = 1024 * 1024;
/// A streaming get gathers (and so verifies) its next frame only once the connection's output
/// holds at most this much: the verified bytes stay within about two frames of the socket, and
/// one frame is always ready behind the one being sent.
pub const GET_READ_AHEAD_BYTES: usize = GET_FRAME_PAYLOAD_BYTES;
/// The pipe through which a connection splices get payloads from Syrup files to its socket
/// (the size the kernel allows unprivileged users by default, `/proc/sys/fs/pipe-max-size`):
/// the pipe is drained into the socket each time this much is in it.
pub const SPLICE_PIPE_BYTES: usize = 1024 * 1024;
/// How long shutdown waits for in-flight requests before closing the engines anyway.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;
/// Rename outcomes a shard remembers after finalizing an intent, so a complete-rename that comes
/// after the maintenance sweep already finished the rename still learns the outcome (not
/// durable: after a restart such a late complete-rename gets NotFound).
pub const RENAME_OUTCOMES_REMEMBERED: usize = 4096;
/// How long start-up retries a bind whose address is still in use (a restart right after
/// `kill -9`: the dead process's listeners close when the kernel has torn down its rings).
pub const BIND_RETRY_MS: u64 = 10_000;
/// Pause between two tries of such a bind.
pub const BIND_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a connection turned away over `connections_max` has to send its first request,
/// which is answered Busy before the connection is closed.
pub const REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Connections being turned away at once per shard (more are closed without an answer).
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// Retry hint of the Busy answer to a connection over `connections_max`.
pub const REFUSED_RETRY_AFTER_MS: u32 = 1_000;
/// Retry hint of a Busy answer for a full cross-shard queue.
pub const QUEUE_FULL_RETRY_AFTER_MS: u32 = 5;

const _: () = assert!(BODY_PIECES_MAX > 0 && OUTPUT_HIGH_BYTES > 0 && COORD_QUEUE_MAX > 0);
// A data frame of a get fits the smallest frame cap.
const _: () = assert!(GET_FRAME_PAYLOAD_BYTES <= candybox_wire::frame::FRAME_BODY_BYTES_MAX_MIN as usize);

/// How long a delete-box waits for operations already running on the Box's partitions (a
/// streamed put holds its partition until its body ends) before it answers Busy.
pub const BOX_DELETE_DRAIN_MS: u64 = 30_000;

/// Each connection's read buffer: many small frames arrive in one read instead of two reads per
/// frame (header, then body); larger bodies bypass it.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Each connection's write buffer, where small pieces of queued replies are gathered into one send.
pub const WRITE_GATHER_BYTES: usize = 64 * 1024;
/// Pieces up to this size are copied into the write buffer; larger ones (get payloads from Syrup
/// mappings) are sent from where they are.
pub const WRITE_GATHER_PIECE_BYTES_MAX: usize = 16 * 1024;
const _: () = assert!(WRITE_GATHER_PIECE_BYTES_MAX <= WRITE_GATHER_BYTES);

/// Retry hint of an Unavailable answer (a partition whose lease is not held right now).
pub const UNAVAILABLE_RETRY_AFTER_MS: u32 = 200;
/// Bound of one coordination call on the control thread (ZooKeeper); a longer one is Unavailable.
pub const COORD_CALL_TIMEOUT_MS: u64 = 5_000;
