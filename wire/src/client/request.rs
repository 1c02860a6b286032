//! Building `Request` flatbuffer bodies, one function per request kind. Each returns the finished
//! flatbuffer (not size-prefixed) as `Bytes`, ready for [`super::codec::RequestEncoder`].
//!
//! Invariants:
//! - Required fields of the schema are always set (an empty key is sent as an empty vector).
//! - A relayed locator is copied into the body byte for byte, never decoded or re-encoded.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::types::{
    ByteRange, Condition, CopyOptions, DeleteKey, Hlc, KeyRange, ListOptions, MetaReplace, PutOptions,
    VersionListOptions, Versioning,
};
use crate::fb;

fn finish<T>(mut fbb: FlatBufferBuilder<'_>, kind: fb::RequestBody, body: WIPOffset<T>) -> Bytes {
    let req = fb::Request::create(&mut fbb, &fb::RequestArgs { body_type: kind, body: Some(body.as_union_value()) });
    fbb.finish(req, None);
    let (vec, head) = fbb.collapse();
    Bytes::from(vec).slice(head..)
}

/// The `Condition` table of `condition` (`None`: no table, the mutation is unconditional).
fn condition_table<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    condition: Option<&Condition>,
) -> Option<WIPOffset<fb::Condition<'a>>> {
    let (mut meta_key, mut meta_value) = (None, None);
    let (kind, version, since_ms) = match condition? {
        Condition::IfAbsent => (fb::ConditionKind::IfAbsent, None, 0),
        Condition::IfVersion(h) => {
            (fb::ConditionKind::IfVersion, Some(fb::Hlc::new(h.physical_ms, h.logical, h.node)), 0)
        }
        Condition::IfUnmodifiedSince(ms) => (fb::ConditionKind::IfUnmodifiedSince, None, *ms),
        Condition::IfMeta { key, value } => {
            meta_key = Some(fbb.create_string(key));
            meta_value = Some(fbb.create_string(value));
            (fb::ConditionKind::IfMeta, None, 0)
        }
    };
    Some(fb::Condition::create(
        fbb,
        &fb::ConditionArgs { kind, version: version.as_ref(), since_ms, meta_key, meta_value },
    ))
}

/// The `MetaReplace` table of `replace` (`None`: no table, metadata kept).
fn replace_table<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    replace: Option<&MetaReplace>,
) -> Option<WIPOffset<fb::MetaReplace<'a>>> {
    let r = replace?;
    let content_type = r.content_type.as_deref().map(|c| fbb.create_string(c));
    let user_meta = crate::build::key_values(fbb, r.user_meta.iter().map(|(k, v)| (k, v)));
    Some(fb::MetaReplace::create(fbb, &fb::MetaReplaceArgs { content_type, user_meta }))
}

/// A `PutTrailer` body: metadata that ends a streamed put (frame version 3).
pub fn put_trailer(user_meta: &[(String, String)]) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let meta = crate::build::key_values(&mut fbb, user_meta.iter().map(|(k, v)| (k, v)));
    let t = fb::PutTrailer::create(&mut fbb, &fb::PutTrailerArgs { user_meta: meta });
    fbb.finish(t, None);
    let (vec, head) = fbb.collapse();
    Bytes::from(vec).slice(head..)
}

/// `SetMeta`.
pub fn set_meta(box_name: &str, key: &[u8], replace: &MetaReplace, condition: Option<&Condition>) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let replace = replace_table(&mut fbb, Some(replace));
    let condition = condition_table(&mut fbb, condition);
    let body =
        fb::SetMeta::create(&mut fbb, &fb::SetMetaArgs { box_name: Some(name), key: Some(key), replace, condition });
    finish(fbb, fb::RequestBody::SetMeta, body)
}

/// `DeleteMany`: each key with its condition or version.
pub fn delete_many(box_name: &str, keys: &[DeleteKey]) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let entries: Vec<_> = keys
        .iter()
        .map(|k| {
            let key = Some(fbb.create_vector(&k.key));
            let condition = condition_table(&mut fbb, k.condition.as_ref());
            let version_id = k.version_id.map(hlc_field);
            fb::DeleteKey::create(&mut fbb, &fb::DeleteKeyArgs { key, condition, version_id: version_id.as_ref() })
        })
        .collect();
    let keys = fbb.create_vector(&entries);
    let body = fb::DeleteMany::create(&mut fbb, &fb::DeleteManyArgs { box_name: Some(name), keys: Some(keys) });
    finish(fbb, fb::RequestBody::DeleteMany, body)
}

fn size_field(size: Option<u64>) -> i64 {
    size.and_then(|s| i64::try_from(s).ok()).unwrap_or(-1)
}

/// `CreateBox`.
pub fn create_box(box_name: &str, partitions: Option<u16>, versioning: Versioning) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let body = fb::CreateBox::create(
        &mut fbb,
        &fb::CreateBoxArgs {
            box_name: Some(name),
            partitions: partitions.unwrap_or(8),
            versioning: versioning_field(versioning),
        },
    );
    finish(fbb, fb::RequestBody::CreateBox, body)
}

fn versioning_field(v: Versioning) -> fb::Versioning {
    match v {
        Versioning::Off => fb::Versioning::Off,
        Versioning::Enabled => fb::Versioning::Enabled,
        Versioning::Suspended => fb::Versioning::Suspended,
    }
}

fn hlc_field(h: Hlc) -> fb::Hlc {
    fb::Hlc::new(h.physical_ms, h.logical, h.node)
}

/// `SetVersioning`.
pub fn set_versioning(box_name: &str, versioning: Versioning) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let body = fb::SetVersioning::create(
        &mut fbb,
        &fb::SetVersioningArgs { box_name: Some(name), versioning: versioning_field(versioning) },
    );
    finish(fbb, fb::RequestBody::SetVersioning, body)
}

/// `ListVersions` of one partition.
pub fn list_versions(box_name: &str, partition: u16, options: &VersionListOptions) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let prefix = options.prefix.as_deref().map(|p| fbb.create_vector(p));
    let key_marker = options.key_marker.as_deref().map(|k| fbb.create_vector(k));
    let version_marker = options.version_marker.map(hlc_field);
    let body = fb::ListVersions::create(
        &mut fbb,
        &fb::ListVersionsArgs {
            box_name: Some(name),
            partition,
            prefix,
            key_marker,
            version_marker: version_marker.as_ref(),
            limit: options.limit,
            with_meta: options.with_meta,
        },
    );
    finish(fbb, fb::RequestBody::ListVersions, body)
}

/// `DeleteBox`.
pub fn delete_box(box_name: &str, force: bool) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let body = fb::DeleteBox::create(&mut fbb, &fb::DeleteBoxArgs { box_name: Some(name), force });
    finish(fbb, fb::RequestBody::DeleteBox, body)
}

/// `HeadBox`.
pub fn head_box(box_name: &str) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let body = fb::HeadBox::create(&mut fbb, &fb::HeadBoxArgs { box_name: Some(name) });
    finish(fbb, fb::RequestBody::HeadBox, body)
}

/// `ListBoxes`.
pub fn list_boxes() -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let body = fb::ListBoxes::create(&mut fbb, &fb::ListBoxesArgs {});
    finish(fbb, fb::RequestBody::ListBoxes, body)
}

/// `Put` (its bytes follow as payload).
pub fn put(box_name: &str, key: &[u8], options: &PutOptions) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let content_type = options.content_type.as_deref().map(|c| fbb.create_string(c));
    let meta = crate::build::key_values(&mut fbb, options.user_meta.iter().map(|(k, v)| (k, v)));
    let condition = condition_table(&mut fbb, options.condition.as_ref());
    let body = fb::Put::create(
        &mut fbb,
        &fb::PutArgs {
            box_name: Some(name),
            key: Some(key),
            content_type,
            user_meta: meta,
            size: size_field(options.size),
            condition,
        },
    );
    finish(fbb, fb::RequestBody::Put, body)
}

/// `Get`.
pub fn get(box_name: &str, key: &[u8], range: ByteRange) -> Bytes {
    get_version(box_name, key, range, None)
}

/// `Get` of version `version` (`None`: the current one).
pub fn get_version(box_name: &str, key: &[u8], range: ByteRange, version: Option<Hlc>) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let (range_kind, first, last) = match range {
        ByteRange::Whole => (fb::RangeKind::Whole, 0, 0),
        ByteRange::FromTo { first, last } => (fb::RangeKind::FromTo, first, last),
        ByteRange::From { first } => (fb::RangeKind::From, first, 0),
        ByteRange::Suffix { length } => (fb::RangeKind::Suffix, length, 0),
    };
    let version_id = version.map(hlc_field);
    let body = fb::Get::create(
        &mut fbb,
        &fb::GetArgs { box_name: Some(name), key: Some(key), range_kind, first, last, version_id: version_id.as_ref() },
    );
    finish(fbb, fb::RequestBody::Get, body)
}

/// `Head`.
pub fn head(box_name: &str, key: &[u8]) -> Bytes {
    head_version(box_name, key, None)
}

/// `Head` of version `version` (`None`: the current one).
pub fn head_version(box_name: &str, key: &[u8], version: Option<Hlc>) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let version_id = version.map(hlc_field);
    let body = fb::Head::create(
        &mut fbb,
        &fb::HeadArgs { box_name: Some(name), key: Some(key), version_id: version_id.as_ref() },
    );
    finish(fbb, fb::RequestBody::Head, body)
}

/// `Delete`, only if the key meets `condition` (`None`: always); with `version`, that version
/// for good.
pub fn delete(box_name: &str, key: &[u8], condition: Option<&Condition>) -> Bytes {
    delete_version(box_name, key, condition, None)
}

/// `Delete` of version `version` (`None`: the key).
pub fn delete_version(box_name: &str, key: &[u8], condition: Option<&Condition>, version: Option<Hlc>) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let condition = condition_table(&mut fbb, condition);
    let version_id = version.map(hlc_field);
    let body = fb::Delete::create(
        &mut fbb,
        &fb::DeleteArgs { box_name: Some(name), key: Some(key), condition, version_id: version_id.as_ref() },
    );
    finish(fbb, fb::RequestBody::Delete, body)
}

/// `List` of one partition.
pub fn list(box_name: &str, partition: u16, options: &ListOptions) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let start = options.start.as_deref().map(|v| fbb.create_vector(v));
    let end = options.end.as_deref().map(|v| fbb.create_vector(v));
    let prefix = options.prefix.as_deref().map(|v| fbb.create_vector(v));
    let start_after = options.start_after.as_deref().map(|v| fbb.create_vector(v));
    let body = fb::List::create(
        &mut fbb,
        &fb::ListArgs {
            box_name: Some(name),
            partition,
            start,
            end,
            prefix,
            start_after,
            reverse: options.reverse,
            limit: options.limit,
            with_meta: options.with_meta,
        },
    );
    finish(fbb, fb::RequestBody::List, body)
}

/// `DeleteRange` of one partition.
pub fn delete_range(box_name: &str, partition: u16, range: &KeyRange) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let (start, end, prefix) = match range {
        KeyRange::Prefix(p) => (None, None, Some(fbb.create_vector(p))),
        KeyRange::Between { start, end } => (Some(fbb.create_vector(start)), Some(fbb.create_vector(end)), None),
    };
    let body =
        fb::DeleteRange::create(&mut fbb, &fb::DeleteRangeArgs { box_name: Some(name), partition, start, end, prefix });
    finish(fbb, fb::RequestBody::DeleteRange, body)
}

/// `Copy` (run by the node).
pub fn copy(box_name: &str, source_key: &[u8], target_key: &[u8], options: &CopyOptions) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let source = fbb.create_vector(source_key);
    let target = fbb.create_vector(target_key);
    let condition = condition_table(&mut fbb, options.condition.as_ref());
    let replace = replace_table(&mut fbb, options.replace.as_ref());
    let source_version = options.source_version.map(hlc_field);
    let body = fb::Copy::create(
        &mut fbb,
        &fb::CopyArgs {
            box_name: Some(name),
            source_key: Some(source),
            target_key: Some(target),
            condition,
            replace,
            source_version: source_version.as_ref(),
        },
    );
    finish(fbb, fb::RequestBody::Copy, body)
}

/// `Rename` (run by the node).
pub fn rename(box_name: &str, source_key: &[u8], target_key: &[u8], options: &CopyOptions) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let source = fbb.create_vector(source_key);
    let target = fbb.create_vector(target_key);
    let condition = condition_table(&mut fbb, options.condition.as_ref());
    let replace = replace_table(&mut fbb, options.replace.as_ref());
    let body = fb::Rename::create(
        &mut fbb,
        &fb::RenameArgs {
            box_name: Some(name),
            source_key: Some(source),
            target_key: Some(target),
            condition,
            replace,
        },
    );
    finish(fbb, fb::RequestBody::Rename, body)
}

/// `CreateUpload`.
pub fn create_upload(box_name: &str, key: &[u8], options: &PutOptions) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let content_type = options.content_type.as_deref().map(|c| fbb.create_string(c));
    let meta = crate::build::key_values(&mut fbb, options.user_meta.iter().map(|(k, v)| (k, v)));
    let body = fb::CreateUpload::create(
        &mut fbb,
        &fb::CreateUploadArgs { box_name: Some(name), key: Some(key), content_type, user_meta: meta },
    );
    finish(fbb, fb::RequestBody::CreateUpload, body)
}

/// `UploadPart` (its bytes follow as payload).
pub fn upload_part(box_name: &str, key: &[u8], upload_id: u64, part_number: u32, size: Option<u64>) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let body = fb::UploadPart::create(
        &mut fbb,
        &fb::UploadPartArgs { box_name: Some(name), key: Some(key), upload_id, part_number, size: size_field(size) },
    );
    finish(fbb, fb::RequestBody::UploadPart, body)
}

/// `CompleteUpload`.
pub fn complete_upload(
    box_name: &str,
    key: &[u8],
    upload_id: u64,
    part_numbers: &[u32],
    user_meta: &[(String, String)],
    condition: Option<&Condition>,
) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let parts = fbb.create_vector(part_numbers);
    let user_meta = crate::build::key_values(&mut fbb, user_meta.iter().map(|(k, v)| (k, v)));
    let condition = condition_table(&mut fbb, condition);
    let body = fb::CompleteUpload::create(
        &mut fbb,
        &fb::CompleteUploadArgs {
            box_name: Some(name),
            key: Some(key),
            upload_id,
            part_numbers: Some(parts),
            user_meta,
            condition,
        },
    );
    finish(fbb, fb::RequestBody::CompleteUpload, body)
}

/// `AbortUpload`.
pub fn abort_upload(box_name: &str, key: &[u8], upload_id: u64) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let body =
        fb::AbortUpload::create(&mut fbb, &fb::AbortUploadArgs { box_name: Some(name), key: Some(key), upload_id });
    finish(fbb, fb::RequestBody::AbortUpload, body)
}

/// `ListUploads` of one partition.
pub fn list_uploads(box_name: &str, partition: u16) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let body = fb::ListUploads::create(&mut fbb, &fb::ListUploadsArgs { box_name: Some(name), partition });
    finish(fbb, fb::RequestBody::ListUploads, body)
}

/// `ListParts`.
pub fn list_parts(box_name: &str, key: &[u8], upload_id: u64) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let body = fb::ListParts::create(&mut fbb, &fb::ListPartsArgs { box_name: Some(name), key: Some(key), upload_id });
    finish(fbb, fb::RequestBody::ListParts, body)
}

/// `GetLocator`.
pub fn get_locator(box_name: &str, key: &[u8]) -> Bytes {
    get_locator_version(box_name, key, None)
}

/// `GetLocator` of version `version` (`None`: the current one).
pub fn get_locator_version(box_name: &str, key: &[u8], version: Option<Hlc>) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let version_id = version.map(hlc_field);
    let body = fb::GetLocator::create(
        &mut fbb,
        &fb::GetLocatorArgs { box_name: Some(name), key: Some(key), version_id: version_id.as_ref() },
    );
    finish(fbb, fb::RequestBody::GetLocator, body)
}

/// `PrepareRename`.
pub fn prepare_rename(box_name: &str, source_key: &[u8], target_key: &[u8]) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let source = fbb.create_vector(source_key);
    let target = fbb.create_vector(target_key);
    let body = fb::PrepareRename::create(
        &mut fbb,
        &fb::PrepareRenameArgs { box_name: Some(name), source_key: Some(source), target_key: Some(target) },
    );
    finish(fbb, fb::RequestBody::PrepareRename, body)
}

/// `ZeroCopyPut`: `locator` goes into the body exactly as received.
pub fn zero_copy_put(
    box_name: &str,
    key: &[u8],
    locator: &[u8],
    rename: Option<(&[u8], u16)>,
    options: &CopyOptions,
) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let key = fbb.create_vector(key);
    let locator = fbb.create_vector(locator);
    let rename_token = rename.map(|(t, _)| fbb.create_vector(t));
    let source_partition = rename.map_or(-1, |(_, p)| i32::from(p));
    let condition = condition_table(&mut fbb, options.condition.as_ref());
    let replace = replace_table(&mut fbb, options.replace.as_ref());
    let body = fb::ZeroCopyPut::create(
        &mut fbb,
        &fb::ZeroCopyPutArgs {
            box_name: Some(name),
            key: Some(key),
            locator: Some(locator),
            rename_token,
            source_partition,
            condition,
            replace,
        },
    );
    finish(fbb, fb::RequestBody::ZeroCopyPut, body)
}

/// `CompleteRename`.
pub fn complete_rename(box_name: &str, source_key: &[u8], token: &[u8]) -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string(box_name);
    let source = fbb.create_vector(source_key);
    let token = fbb.create_vector(token);
    let body = fb::CompleteRename::create(
        &mut fbb,
        &fb::CompleteRenameArgs { box_name: Some(name), source_key: Some(source), token: Some(token) },
    );
    finish(fbb, fb::RequestBody::CompleteRename, body)
}

/// `Topology`.
pub fn topology() -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let body = fb::Topology::create(&mut fbb, &fb::TopologyArgs {});
    finish(fbb, fb::RequestBody::Topology, body)
}

/// `Stats`.
pub fn stats() -> Bytes {
    let mut fbb = FlatBufferBuilder::new();
    let body = fb::Stats::create(&mut fbb, &fb::StatsArgs {});
    finish(fbb, fb::RequestBody::Stats, body)
}
