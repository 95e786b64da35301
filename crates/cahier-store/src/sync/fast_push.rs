//! Accepting a pushed change set without loading the document (docs/SYNC.md, "Fast path").
//!
//! The full path of [`Store::push`](crate::Store::push) loads the entry's Automerge document,
//! applies the changes, reads the content before and after to check what may not change, saves
//! the whole document and projects it: ~14 ms of CPU per document. Most pushed edits only
//! change the body's text or a plain field like the title, which none of those checks guard.
//! For them this module proves, from the change bytes alone, that the result is the one the
//! full path would accept, and says what to write: the changes appended to the stored document,
//! the new heads (from the old heads and the changes' dependencies), and a stale projection for
//! the background projector ([`crate::deferred`]).
//!
//! What the proof needs of the document is kept in `entity_doc_index`, keyed by the document's
//! heads and rebuilt from `entity_changes` (decoding the change bytes, never the document) when
//! they differ: the id of the body's Text object, the op ids of the body's elements (an edit
//! must refer to elements that exist, or Automerge would refuse the document) and each actor's
//! last sequence number (Automerge refuses a repeated one).

use automerge::legacy::{ElementId, Key, ObjectId, OpType};
use automerge::{Change, ChangeHash, ExpandedChange, ScalarValue};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Root keys a fast-path change may set to a plain value. Nothing the full path checks reads
/// them (fields and metadata, stock, attachments, id, kind, author and creation time are
/// elsewhere); they are projected like the body.
const PLAIN_ROOT_KEYS: &[&str] = &[
    "title",
    "date",
    "rating",
    "content_type",
    "status",
    "category",
];

/// The magic bytes that start every Automerge chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk types: a change, and a DEFLATE-compressed change.
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// One pushed change, parsed (its checksum and ops verified by Automerge), with the bytes it
/// came in.
pub(crate) struct Parsed<'a> {
    pub(crate) change: Change,
    pub(crate) raw: &'a [u8],
}

/// Splits pushed bytes into change chunks and parses each one. `None` when they are anything
/// else (a whole document, garbage, trailing bytes): the full path then decides.
pub(crate) fn parse_changes(bytes: &[u8]) -> Option<Vec<Parsed<'_>>> {
    let mut changes = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 9 || rest[..4] != CHUNK_MAGIC {
            return None;
        }
        let kind = rest[8];
        if kind != CHUNK_CHANGE && kind != CHUNK_COMPRESSED_CHANGE {
            return None;
        }
        let (len, leb) = read_uleb(&rest[9..])?;
        let end = 9usize
            .checked_add(leb)?
            .checked_add(usize::try_from(len).ok()?)?;
        if end > rest.len() {
            return None;
        }
        let (chunk, tail) = rest.split_at(end);
        let change = Change::try_from(chunk).ok()?;
        // Automerge refuses to load a chunk whose checksum (the first bytes of the change's
        // hash) is wrong; parsing alone does not check it.
        if chunk[4..8] != change.hash().0[..4] {
            return None;
        }
        changes.push(Parsed { change, raw: chunk });
        rest = tail;
    }
    (!changes.is_empty()).then_some(changes)
}

/// An unsigned LEB128 and the number of bytes it took.
fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f).checked_shl(7 * u32::try_from(i).ok()?)?;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Decodes a change's operations. Automerge's decoder trusts the actor indices of the op
/// columns, which its parser does not check (it panics on a crafted change): they are checked
/// first, so such a change goes the full path without a panic. The `catch_unwind` stays as a
/// last guard.
fn decode(change: &Change) -> Option<ExpandedChange> {
    if !actor_indices_valid(change) {
        return None;
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode())).ok()
}

/// Column type of actor indices in the column specification (its low three bits).
const COLUMN_TYPE_ACTOR: u64 = 1;

/// Whether every actor index in the op columns of `change` names one of its actors (its own,
/// 0, or one of the others). Reads the change's header and columns as the format lays them
/// out; anything it cannot read counts as invalid.
fn actor_indices_valid(change: &Change) -> bool {
    let Ok(max) = u64::try_from(change.other_actor_ids().len()) else {
        return false;
    };
    let read = || -> Option<bool> {
        let bytes = change.raw_bytes();
        let mut at = Cursor { bytes, at: 9 };
        at.uleb()?; // chunk length
        let deps = at.uleb()?;
        at.skip(deps.checked_mul(32)?)?;
        let actor = at.uleb()?;
        at.skip(actor)?;
        at.uleb()?; // seq
        at.uleb()?; // start op
        at.sleb()?; // time
        let message = at.uleb()?;
        at.skip(message)?;
        for _ in 0..at.uleb()? {
            let other = at.uleb()?;
            at.skip(other)?;
        }
        let n = at.uleb()?;
        let mut columns = Vec::new();
        for _ in 0..n {
            columns.push((at.uleb()?, usize::try_from(at.uleb()?).ok()?));
        }
        for (spec, len) in columns {
            let data = bytes.get(at.at..at.at.checked_add(len)?)?;
            at.at += len;
            if spec & 7 == COLUMN_TYPE_ACTOR && !rle_all_at_most(data, max)? {
                return Some(false);
            }
        }
        Some(true)
    };
    read().unwrap_or(false)
}

/// Whether each value of an RLE column of unsigned integers is at most `max`; `None` if the
/// column does not read.
fn rle_all_at_most(data: &[u8], max: u64) -> Option<bool> {
    let mut at = Cursor { bytes: data, at: 0 };
    while at.at < data.len() {
        let count = at.sleb()?;
        let values = match count {
            0 => {
                at.uleb()?; // nulls
                0
            }
            n if n > 0 => 1,
            n => n.unsigned_abs(),
        };
        for _ in 0..values {
            if at.uleb()? > max {
                return Some(false);
            }
        }
    }
    Some(true)
}

/// A position in bytes, for [`actor_indices_valid`].
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn uleb(&mut self) -> Option<u64> {
        let (value, n) = read_uleb(self.bytes.get(self.at..)?)?;
        self.at += n;
        Some(value)
    }

    fn sleb(&mut self) -> Option<i64> {
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            if shift >= 64 {
                return None;
            }
            value |= i64::from(byte & 0x7f).checked_shl(shift)?;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
        }
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.at = self.at.checked_add(usize::try_from(n).ok()?)?;
        (self.at <= self.bytes.len()).then_some(())
    }
}

/// An op id as the index stores it.
type OpKey = (u64, String);

/// What the fast path knows of a document at some heads (the `info` of `entity_doc_index`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DocIndex {
    /// The body Text object's id: counter and actor (hex).
    body: OpKey,
    /// Per actor, runs `[first, last]` of op counters that are elements of the body.
    elems: HashMap<String, Vec<(u64, u64)>>,
    /// Per actor, the highest change sequence number.
    seqs: HashMap<String, u64>,
}

impl DocIndex {
    /// The same index with each actor's runs sorted (the order changes were read in aside).
    #[cfg(test)]
    pub(crate) fn normalized(mut self) -> Self {
        for runs in self.elems.values_mut() {
            runs.sort_unstable();
        }
        self
    }

    fn has_elem(&self, counter: u64, actor: &str) -> bool {
        self.elems
            .get(actor)
            .is_some_and(|runs| runs.iter().any(|(a, b)| (*a..=*b).contains(&counter)))
    }

    fn add_elem(&mut self, counter: u64, actor: &str) {
        // No allocation per element once the actor is known.
        if !self.elems.contains_key(actor) {
            self.elems.insert(actor.to_owned(), Vec::new());
        }
        let Some(runs) = self.elems.get_mut(actor) else {
            return;
        };
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(counter) => *last = counter,
            _ => runs.push((counter, counter)),
        }
    }

    fn note_seq(&mut self, actor: &str, seq: u64) {
        let max = self.seqs.entry(actor.to_owned()).or_default();
        *max = (*max).max(seq);
    }
}

/// Builds the index of a document from all its changes (`hash`, `deps`, `bytes` rows of
/// `entity_changes`). `None` unless they are exactly the document's changes (closed under
/// dependencies, with `heads` as heads) and the body is the one Text object ever put at
/// `ROOT.body`.
pub(crate) fn build_index(rows: &[(String, String, Vec<u8>)], heads: &str) -> Option<DocIndex> {
    let hashes: HashSet<&str> = rows.iter().map(|(h, _, _)| h.as_str()).collect();
    let mut depended: HashSet<&str> = HashSet::new();
    for (_, deps, _) in rows {
        for dep in deps.split(',').filter(|d| !d.is_empty()) {
            if !hashes.contains(dep) {
                return None;
            }
            depended.insert(dep);
        }
    }
    let tips: BTreeSet<&str> = hashes.difference(&depended).copied().collect();
    let want: BTreeSet<&str> = heads.split(',').filter(|h| !h.is_empty()).collect();
    if tips != want {
        return None;
    }
    let mut decoded = Vec::with_capacity(rows.len());
    for (hash, _, bytes) in rows {
        let change = Change::try_from(bytes.as_slice()).ok()?;
        if change.hash().to_string() != *hash {
            return None;
        }
        decoded.push(decode(&change)?);
    }
    let mut index = DocIndex::default();
    let mut body = None;
    for change in &decoded {
        let actor = change.actor_id.to_hex_string();
        index.note_seq(&actor, change.seq);
        for (i, op) in change.operations.iter().enumerate() {
            if op.obj == ObjectId::Root && op.key == Key::Map("body".into()) {
                if body.is_some() || op.action != OpType::Make(automerge::ObjType::Text) {
                    return None;
                }
                body = Some((op_counter(change, i)?, actor.clone()));
            }
        }
    }
    index.body = body?;
    // The body's id as Automerge holds it, so each op is compared without formatting its
    // actor (a seeded entry's creation change holds one op per character of its body).
    let body_actor = automerge::ActorId::from(hex::decode(&index.body.1).ok()?);
    let body_counter = index.body.0;
    for change in &decoded {
        let actor = change.actor_id.to_hex_string();
        for (i, op) in change.operations.iter().enumerate() {
            let in_body = matches!(&op.obj, ObjectId::Id(id) if id.counter() == body_counter && *id.actor() == body_actor);
            if op.insert && in_body {
                index.add_elem(op_counter(change, i)?, &actor);
            }
        }
    }
    Some(index)
}

/// The index after `changes` (raw change chunks, in causal order) on top of `index`, the
/// index at the heads they were written on: only these changes are decoded, never the log.
/// `None` when one of them touches `ROOT.body` (the body is no longer the one Text object ever
/// put there, so the fast path no longer applies) or cannot be parsed.
pub(crate) fn advance_index<'a>(
    mut index: DocIndex,
    changes: impl IntoIterator<Item = &'a [u8]>,
) -> Option<DocIndex> {
    let body_actor = automerge::ActorId::from(hex::decode(&index.body.1).ok()?);
    let body_counter = index.body.0;
    for bytes in changes {
        let change = Change::try_from(bytes).ok()?;
        let expanded = decode(&change)?;
        let actor = expanded.actor_id.to_hex_string();
        index.note_seq(&actor, expanded.seq);
        for (i, op) in expanded.operations.iter().enumerate() {
            match &op.obj {
                ObjectId::Root if op.key == Key::Map("body".into()) => return None,
                ObjectId::Id(id)
                    if op.insert && id.counter() == body_counter && *id.actor() == body_actor =>
                {
                    index.add_elem(op_counter(&expanded, i)?, &actor);
                }
                _ => {}
            }
        }
    }
    Some(index)
}

fn op_counter(change: &ExpandedChange, i: usize) -> Option<u64> {
    change.start_op.get().checked_add(u64::try_from(i).ok()?)
}

fn is_obj(obj: &ObjectId, id: &OpKey) -> bool {
    match obj {
        ObjectId::Id(op) => op.counter() == id.0 && op.actor().to_hex_string() == id.1,
        ObjectId::Root => false,
    }
}

/// What the fast path writes for an accepted push.
pub(crate) struct Plan<'a> {
    /// The changes not yet known, in causal order.
    pub(crate) new: Vec<Parsed<'a>>,
    /// Heads after them.
    pub(crate) heads: String,
    /// Their actors, sorted, to bind.
    pub(crate) actors: Vec<String>,
    /// The index at the new heads.
    pub(crate) index: DocIndex,
}

/// Why the fast path cannot decide alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refer {
    /// Something only a loaded document can check: the full path runs.
    Full,
    /// A change builds on one this entity lacks: the full path answers NeedFull.
    UnknownDeps,
}

/// Decides whether `pushed` changes can be accepted without the document whose heads are
/// `heads`, whose known change hashes are `known`, and whose index is `index`. `Ok` with no
/// new change means every change is already here (an idempotent replay).
pub(crate) fn plan<'a>(
    pushed: Vec<Parsed<'a>>,
    heads: &str,
    known: &HashSet<String>,
    mut index: DocIndex,
) -> Result<Plan<'a>, Refer> {
    // Already known changes are skipped; the rest are ordered so that deps come first.
    let mut pending: Vec<Parsed<'a>> = Vec::new();
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    for parsed in pushed {
        let hash = parsed.change.hash();
        if known.contains(&hash.to_string()) || !seen.insert(hash) {
            continue;
        }
        pending.push(parsed);
    }
    let mut ordered: Vec<Parsed<'a>> = Vec::with_capacity(pending.len());
    let mut have: HashSet<ChangeHash> = HashSet::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|p| {
            p.change
                .deps()
                .iter()
                .all(|d| have.contains(d) || known.contains(&d.to_string()))
        });
        let Some(at) = ready else {
            // A dep is neither here nor pushed (or the changes depend on each other).
            return Err(Refer::UnknownDeps);
        };
        let parsed = pending.remove(at);
        have.insert(parsed.change.hash());
        ordered.push(parsed);
    }
    let mut tips: BTreeSet<String> = heads
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let mut actors = BTreeSet::new();
    for parsed in &ordered {
        let change = &parsed.change;
        if change.author().is_some() || !change.extra_bytes().is_empty() {
            return Err(Refer::Full);
        }
        let actor = change.actor_id().to_hex_string();
        // Automerge refuses a sequence number an actor already used.
        if change.seq() <= index.seqs.get(&actor).copied().unwrap_or(0) {
            return Err(Refer::Full);
        }
        index.note_seq(&actor, change.seq());
        let expanded = decode(change).ok_or(Refer::Full)?;
        for (i, op) in expanded.operations.iter().enumerate() {
            let id = op_counter(&expanded, i).ok_or(Refer::Full)?;
            check_op(op, id, &actor, &mut index)?;
        }
        for dep in change.deps() {
            tips.remove(&dep.to_string());
        }
        tips.insert(change.hash().to_string());
        actors.insert(actor);
    }
    Ok(Plan {
        new: ordered,
        heads: tips.into_iter().collect::<Vec<_>>().join(","),
        actors: actors.into_iter().collect(),
        index,
    })
}

/// One op of a fast-path change: a plain value put on an allowed root key, or an edit of the
/// body's text on elements that exist.
fn check_op(
    op: &automerge::legacy::Op,
    id: u64,
    actor: &str,
    index: &mut DocIndex,
) -> Result<(), Refer> {
    match &op.obj {
        ObjectId::Root => match (&op.key, &op.action) {
            (Key::Map(key), OpType::Put(_))
                if !op.insert && PLAIN_ROOT_KEYS.contains(&key.as_str()) =>
            {
                Ok(())
            }
            _ => Err(Refer::Full),
        },
        obj if is_obj(obj, &index.body) => {
            let anchor_known = match &op.key {
                Key::Seq(ElementId::Head) => op.insert,
                Key::Seq(ElementId::Id(e)) => {
                    index.has_elem(e.counter(), &e.actor().to_hex_string())
                }
                Key::Map(_) => false,
            };
            let action_ok = match &op.action {
                OpType::Put(ScalarValue::Str(_)) => true,
                OpType::Delete => !op.insert,
                _ => false,
            };
            if !anchor_known || !action_ok {
                return Err(Refer::Full);
            }
            if op.insert {
                index.add_elem(id, actor);
            }
            Ok(())
        }
        ObjectId::Id(_) => Err(Refer::Full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};

    fn change_rows(doc: &mut AutoCommit) -> Vec<(String, String, Vec<u8>)> {
        doc.get_changes(&[])
            .into_iter()
            .map(|mut c| {
                let deps: Vec<String> = c.deps().iter().map(ToString::to_string).collect();
                (c.hash().to_string(), deps.join(","), c.bytes().into_owned())
            })
            .collect()
    }

    fn heads(doc: &mut AutoCommit) -> String {
        cahier_core::document::heads_to_string(&doc.get_heads())
    }

    fn sample() -> (AutoCommit, automerge::ObjId) {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "title", "t").expect("put");
        let body = doc.put_object(ROOT, "body", ObjType::Text).expect("body");
        doc.splice_text(&body, 0, 0, "hello world").expect("text");
        doc.put_object(ROOT, "fields", ObjType::Map)
            .expect("fields");
        doc.commit();
        (doc, body)
    }

    #[test]
    fn a_text_edit_is_planned_with_the_heads_automerge_computes() {
        let (mut doc, body) = sample();
        let base = heads(&mut doc);
        let index = build_index(&change_rows(&mut doc), &base).expect("index");
        let known: HashSet<String> = change_rows(&mut doc).into_iter().map(|r| r.0).collect();
        let mut fork = doc.fork();
        fork.splice_text(&body, 5, 0, " big").expect("edit");
        fork.put(ROOT, "title", "new").expect("title");
        fork.commit();
        fork.splice_text(&body, 0, 1, "H").expect("edit");
        fork.commit();
        let bytes = fork.save_after(&doc.get_heads());
        let parsed = parse_changes(&bytes).expect("chunks");
        assert_eq!(parsed.len(), 2);
        let planned = plan(parsed, &base, &known, index).expect("plan");
        assert_eq!(planned.new.len(), 2);
        assert_eq!(planned.heads, heads(&mut fork));
        // The stored document with the changes appended loads to the same document.
        let mut stored = doc.save();
        for p in &planned.new {
            stored.extend_from_slice(p.raw);
        }
        let loaded = AutoCommit::load(&stored).expect("load");
        assert_eq!(loaded.text(&body).expect("text"), "Hello big world");
    }

    #[test]
    fn actor_indices_are_checked_before_decoding() {
        let (mut doc, body) = sample();
        let mut other = doc.fork();
        other.splice_text(&body, 3, 0, "xyz").expect("edit");
        other.commit();
        let mut change = other.get_last_local_change().expect("change");
        assert!(!change.other_actor_ids().is_empty());
        assert!(actor_indices_valid(&change));
        assert!(decode(&change).is_some());
        // Every one-byte corruption that still parses: either the indices are refused, or
        // decoding does not panic. Some corruptions put an index out of range.
        let bytes = change.bytes().into_owned();
        let mut refused = 0;
        for i in 9..bytes.len() {
            for value in [0u8, 1, 2, 3, 7, 0x7f] {
                let mut bad = bytes.clone();
                bad[i] = value;
                let Ok(parsed) = Change::try_from(bad.as_slice()) else {
                    continue;
                };
                if actor_indices_valid(&parsed) {
                    let decoded = std::panic::catch_unwind(|| parsed.decode());
                    assert!(decoded.is_ok(), "byte {i} = {value} panics");
                } else {
                    refused += 1;
                    assert!(decode(&parsed).is_none());
                }
            }
        }
        assert!(refused > 0);
        // A large change (compressed when stored) reads the same.
        let mut big = AutoCommit::new();
        let text = big.put_object(ROOT, "body", ObjType::Text).expect("body");
        big.splice_text(&text, 0, 0, &"abcdefghij".repeat(500))
            .expect("text");
        big.commit();
        let mut change = big.get_last_local_change().expect("change");
        let stored = change.bytes().into_owned();
        assert!(stored.len() < change.raw_bytes().len(), "compressed");
        let reparsed = Change::try_from(stored.as_slice()).expect("parse");
        assert!(actor_indices_valid(&reparsed));
    }

    #[test]
    fn guarded_keys_nested_objects_and_unknown_elements_are_referred() {
        let (mut doc, body) = sample();
        let base = heads(&mut doc);
        let index = build_index(&change_rows(&mut doc), &base).expect("index");
        let known: HashSet<String> = change_rows(&mut doc).into_iter().map(|r| r.0).collect();
        let mut attempt = |edit: &dyn Fn(&mut AutoCommit)| {
            let mut fork = doc.fork();
            edit(&mut fork);
            fork.commit();
            let bytes = fork.save_after(&doc.get_heads());
            plan(
                parse_changes(&bytes).expect("chunks"),
                &base,
                &known,
                index.clone(),
            )
            .map(|p| p.new.len())
        };
        assert_eq!(
            attempt(&|d| {
                let fields = d.get(ROOT, "fields").expect("get").expect("fields").1;
                d.put(&fields, "x", 1).expect("put");
            }),
            Err(Refer::Full)
        );
        assert_eq!(
            attempt(&|d| {
                d.put(ROOT, "created_by", 9).expect("put");
            }),
            Err(Refer::Full)
        );
        assert_eq!(
            attempt(&|d| {
                d.put_object(ROOT, "body", ObjType::Text).expect("put");
            }),
            Err(Refer::Full)
        );
        assert_eq!(
            attempt(&|d| {
                d.splice_text(&body, 2, 1, "y").expect("edit");
            }),
            Ok(1)
        );
        // An edit on elements the index does not know (it would not load): referred.
        let mut blind = index.clone();
        blind.elems.clear();
        let mut fork = doc.fork();
        fork.splice_text(&body, 3, 1, "").expect("edit");
        fork.commit();
        let bytes = fork.save_after(&doc.get_heads());
        assert_eq!(
            plan(parse_changes(&bytes).expect("chunks"), &base, &known, blind)
                .map(|p| p.new.len())
                .err(),
            Some(Refer::Full)
        );
        // A replay: nothing new.
        let bytes = doc.save_after(&[]);
        let replay = plan(
            parse_changes(&bytes).expect("chunks"),
            &base,
            &known,
            index.clone(),
        )
        .expect("plan");
        assert!(replay.new.is_empty());
        assert_eq!(replay.heads, base);
        // Changes on a version this entity lacks.
        let mut other = doc.fork();
        other.put(ROOT, "title", "a").expect("put");
        other.commit();
        let middle = other.get_heads();
        other.put(ROOT, "title", "b").expect("put");
        other.commit();
        let bytes = other.save_after(&middle);
        assert_eq!(
            plan(parse_changes(&bytes).expect("chunks"), &base, &known, index)
                .map(|p| p.new.len())
                .err(),
            Some(Refer::UnknownDeps)
        );
        assert!(parse_changes(&doc.save()).is_none());
        let mut corrupt = doc.save_after(&[]);
        corrupt[5] ^= 0xff;
        assert!(parse_changes(&corrupt).is_none());
        assert!(AutoCommit::load(&corrupt).is_err());
        assert!(parse_changes(b"not automerge").is_none());
    }
}

use super::{Accepted, BoundActors, Device, Pushed};
use crate::sync::proto::{PushDoc, PushResult, PushStatus};
use crate::{Result, Store};
use cahier_core::Subject;
use cahier_core::document::ChangeInfo;
use sqlx::SqliteConnection;

impl Store {
    /// The fast path of one pushed document of an existing, writable entry `id` (its row
    /// checks passed), on `tx` inside the document's savepoint. `None` when the full path must
    /// decide; nothing the full path would not write has been written then.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request's context, all needed"
    )]
    pub(super) async fn push_fast(
        &self,
        tx: &mut SqliteConnection,
        now: i64,
        subject: &Subject,
        device: &Device,
        push: &PushDoc,
        bytes: &[u8],
        id: i64,
        known_actors: (&BoundActors, &mut Vec<String>),
    ) -> Result<Option<Pushed>> {
        let Some(parsed) = parse_changes(bytes) else {
            return Ok(None);
        };
        // The document's heads and the index, with the heads it is at, in one query.
        let (heads, stored): (String, Option<(String, String)>) = {
            let (heads, at, info): (String, Option<String>, Option<String>) = sqlx::query_as(
                "SELECT d.heads, x.heads, x.info FROM entity_docs d \
                 LEFT JOIN entity_doc_index x ON x.entity_id = d.entity_id WHERE d.entity_id = ?",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            (heads, at.zip(info))
        };
        let Some(index) = self.doc_index(tx, id, &heads, stored).await? else {
            return Ok(None);
        };
        let known: HashSet<String> =
            sqlx::query_scalar("SELECT hash FROM entity_changes WHERE entity_id = ?")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let planned = match plan(parsed, &heads, &known, index) {
            Ok(planned) => planned,
            Err(Refer::Full | Refer::UnknownDeps) => return Ok(None),
        };
        if planned.new.is_empty() {
            // Every change is here already: accepted again, nothing written.
            self.sync_stats.count_fast();
            return Ok(Some(Pushed::Undo(
                PushResult {
                    status: PushStatus::Accepted,
                    id: Some(id),
                    heads,
                    ..PushResult::empty(&push.uuid)
                },
                None,
            )));
        }
        self.bind_actors(tx, &planned.actors, subject, device, known_actors)
            .await?;
        let (appended, changes) = to_append(planned.new);
        let new_heads = planned.heads;
        // Automerge loads a saved document followed by change chunks; whoever next loads and
        // saves it (the projector) stores it compact again.
        sqlx::query(
            "UPDATE entity_docs SET heads = ?, doc = CAST(doc || ? AS BLOB) WHERE entity_id = ?",
        )
        .bind(&new_heads)
        .bind(&appended)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let n_changes = changes.len();
        self.insert_changes_from(tx, id, changes, subject.user_id, &device.uuid)
            .await?;
        // The feed's heads and sequence move now; the content columns once projected. The
        // sequence is taken here, as the trigger of migration 24 would take it (which then
        // does not fire): the row is written once, not twice.
        let seq: i64 = sqlx::query_scalar(
            "UPDATE sync_counter SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE entities SET heads = ?, modified_at = ?, lastchangeby = ?, sync_seq = ? \
             WHERE id = ?",
        )
        .bind(&new_heads)
        .bind(now)
        .bind(subject.user_id)
        .bind(seq)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO projection_stale (entity_id, heads, since) VALUES (?, ?, ?) \
             ON CONFLICT (entity_id) DO UPDATE SET heads = excluded.heads",
        )
        .bind(id)
        .bind(&new_heads)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        save_index(tx, id, &new_heads, Some(&planned.index)).await?;
        let result = Accepted {
            uuid: &push.uuid,
            id,
            heads: &new_heads,
            changes: n_changes,
            created: false,
        }
        .record(tx, now, subject, device)
        .await?;
        self.sync_stats.count_fast();
        Ok(Some(Pushed::Keep(
            PushResult {
                seq: Some(seq),
                ..result
            },
            None,
        )))
    }

    /// Keeps entity `id`'s index current after a server write (creation, UI or API edit,
    /// import, the full path of a push) that moved its document from `old_heads` (empty for a
    /// creation) to `new_heads` by adding `changes`, in causal order, on `conn` inside the
    /// write's transaction. A creation builds it from its own changes; an edit decodes only
    /// its new changes on top of the index at `old_heads`. Without an index at `old_heads`
    /// (an entry from before migration 26 not yet reached by [`Store::run_index_builder`])
    /// nothing is written; nor on a replica's store, which no one pushes to.
    pub(crate) async fn index_write(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
        old_heads: &str,
        new_heads: &str,
        changes: &[ChangeInfo],
    ) -> Result<()> {
        if self.is_replica() {
            // Nothing pushes to a replica.
            return Ok(());
        }
        if old_heads.is_empty() {
            let rows: Vec<(String, String, Vec<u8>)> = changes
                .iter()
                .map(|c| (c.hash.clone(), c.deps.join(","), c.bytes.clone()))
                .collect();
            let index = build_index(&rows, new_heads);
            return save_index(conn, id, new_heads, index.as_ref()).await;
        }
        let stored: Option<(String, String)> =
            sqlx::query_as("SELECT heads, info FROM entity_doc_index WHERE entity_id = ?")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some((at, info)) = stored else {
            return Ok(());
        };
        if at != old_heads {
            return Ok(());
        }
        let index = serde_json::from_str::<DocIndex>(&info)
            .ok()
            .and_then(|index| advance_index(index, changes.iter().map(|c| c.bytes.as_slice())));
        save_index(conn, id, new_heads, index.as_ref()).await
    }

    /// The index of entity `id`'s document at `heads`: `stored` (heads and info) when at
    /// them, or rebuilt from its changes
    /// (and stored, also when it cannot be built, so that the next push does not try again at
    /// the same heads).
    async fn doc_index(
        &self,
        tx: &mut SqliteConnection,
        id: i64,
        heads: &str,
        stored: Option<(String, String)>,
    ) -> Result<Option<DocIndex>> {
        if let Some((at, info)) = stored
            && at == heads
        {
            return Ok(serde_json::from_str(&info).ok());
        }
        let rows: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT hash, deps, bytes FROM entity_changes WHERE entity_id = ?")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let index = build_index(&rows, heads);
        self.sync_stats.count_rebuild();
        save_index(tx, id, heads, index.as_ref()).await?;
        Ok(index)
    }
}

/// What accepting `new` changes (in causal order) writes: their bytes, appended to the stored
/// document, and their rows of `entity_changes`.
pub(super) fn to_append(new: Vec<Parsed<'_>>) -> (Vec<u8>, Vec<ChangeInfo>) {
    let mut appended = Vec::with_capacity(new.iter().map(|p| p.raw.len()).sum());
    let mut changes = Vec::with_capacity(new.len());
    for parsed in new {
        appended.extend_from_slice(parsed.raw);
        let mut change = parsed.change;
        changes.push(ChangeInfo {
            hash: change.hash().to_string(),
            actor: change.actor_id().to_hex_string(),
            time_ms: change.timestamp().saturating_mul(1000),
            message: change.message().map(str::to_owned).unwrap_or_default(),
            deps: change.deps().iter().map(ToString::to_string).collect(),
            bytes: change.bytes().into_owned(),
        });
    }
    (appended, changes)
}

/// An index as `entity_doc_index.info` stores it (empty: the fast path does not apply).
pub(super) fn index_info(index: Option<&DocIndex>) -> String {
    match index {
        Some(index) => serde_json::to_string(index).unwrap_or_default(),
        None => String::new(),
    }
}

/// Stores an entity's index at `heads`; `None` records that the fast path does not apply
/// there.
pub(super) async fn save_index(
    conn: &mut SqliteConnection,
    id: i64,
    heads: &str,
    index: Option<&DocIndex>,
) -> Result<()> {
    let info = index_info(index);
    sqlx::query(
        "INSERT INTO entity_doc_index (entity_id, heads, info) VALUES (?, ?, ?) \
         ON CONFLICT (entity_id) DO UPDATE SET heads = excluded.heads, info = excluded.info",
    )
    .bind(id)
    .bind(heads)
    .bind(info)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`save_index`] only if entity `id`'s document is still at `heads` (compare and set, for a
/// builder that read its log outside the write transaction); whether it was stored.
pub(super) async fn save_index_at(
    conn: &mut SqliteConnection,
    id: i64,
    heads: &str,
    index: Option<&DocIndex>,
) -> Result<bool> {
    let current: Option<String> =
        sqlx::query_scalar("SELECT heads FROM entity_docs WHERE entity_id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    if current.as_deref() != Some(heads) {
        return Ok(false);
    }
    save_index(conn, id, heads, index).await?;
    Ok(true)
}

/// Counts of what pushes did, for tests and the bench.
#[derive(Debug, Default)]
pub struct SyncStats {
    fast: std::sync::atomic::AtomicU64,
    bulk: std::sync::atomic::AtomicU64,
    rebuilds: std::sync::atomic::AtomicU64,
    /// When a push last committed (or started), for background work that yields to pushes.
    last_push: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SyncStats {
    /// Notes that a push is under way (at its start and at each commit).
    pub(super) fn mark_push(&self) {
        if let Ok(mut last) = self.last_push.lock() {
            *last = Some(std::time::Instant::now());
        }
    }

    /// How long ago a push last started or committed (`None`: none since the store opened).
    pub(super) fn since_push(&self) -> Option<std::time::Duration> {
        self.last_push
            .lock()
            .ok()
            .and_then(|last| last.map(|at| at.elapsed()))
    }

    fn count_rebuild(&self) {
        self.rebuilds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Indexes a push rebuilt from a whole change log (none was current at the entry's
    /// heads) since the store was opened.
    pub fn index_rebuilds(&self) -> u64 {
        self.rebuilds.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn count_fast(&self) {
        self.fast.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pushed documents accepted without loading their document since the store was opened.
    pub fn fast_pushes(&self) -> u64 {
        self.fast.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn count_bulk(&self) {
        self.bulk.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Of the [`SyncStats::fast_pushes`], those decided and written in bulk, many documents
    /// per statement (docs/SYNC.md); the others went the per-document fast path.
    pub fn bulk_pushes(&self) -> u64 {
        self.bulk.load(std::sync::atomic::Ordering::Relaxed)
    }
}
