//! Builders of schema pieces that both sides of the protocol write (the node's replies and the
//! client's requests), so the two never encode the same table differently.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use crate::fb;

/// User metadata as a vector of `KeyValue` tables, or `None` (the field left out) when empty.
pub fn key_values<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    meta: &[(String, String)],
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<fb::KeyValue<'a>>>>> {
    if meta.is_empty() {
        return None;
    }
    let kvs: Vec<_> = meta
        .iter()
        .map(|(k, v)| {
            let key = Some(fbb.create_string(k));
            let value = Some(fbb.create_string(v));
            fb::KeyValue::create(fbb, &fb::KeyValueArgs { key, value })
        })
        .collect();
    Some(fbb.create_vector(&kvs))
}
