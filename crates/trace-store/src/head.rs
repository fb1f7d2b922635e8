//! The head: spans received since the last flush, held encoded in one arena, indexed by
//! trace id, with a small summary row per span for search.

use std::sync::Arc;

use hashbrown::HashMap;
use lastmile_model::{Resource, Scope, Span, SpanBatch, StatusCode, TraceId};
use lastmile_store::codec::{Decoder, put_uvarint};
use xxhash_rust::xxh3::xxh3_64;

use crate::codec::{self, DecodeError};
use crate::search::{SummaryBuilder, TraceQuery, TraceSummary};

/// A resource and scope shared by spans, with its service name resolved.
#[derive(Debug)]
pub struct Group {
    pub resource: Resource,
    pub scope: Scope,
    /// Id of `resource.service_name()` in the string table.
    pub(crate) service: u32,
    /// The group as encoded (blocks copy it as is).
    pub(crate) encoded: Vec<u8>,
}

/// Strings of the search rows (service and span names), each stored once.
#[derive(Default, Debug)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    pub strings: Vec<String>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", String::as_str)
    }
}

/// What the head keeps per span besides its encoded bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanRow {
    pub trace_id: TraceId,
    pub offset: usize,
    pub len: u32,
    pub group: u32,
    pub name: u32,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub status: StatusCode,
    pub root: bool,
}

#[derive(Default)]
pub struct Head {
    pub(crate) groups: Vec<Arc<Group>>,
    group_by_hash: HashMap<u64, Vec<u32>>,
    pub(crate) strings: Interner,
    pub(crate) arena: Vec<u8>,
    pub(crate) rows: Vec<SpanRow>,
    by_trace: HashMap<TraceId, Vec<u32>>,
    operations: hashbrown::HashSet<(u32, u32)>,
    /// When the first span of this head arrived (for the age-based flush).
    pub(crate) created: Option<std::time::Instant>,
}

impl Head {
    pub fn span_count(&self) -> usize {
        self.rows.len()
    }

    pub fn trace_count(&self) -> usize {
        self.by_trace.len()
    }

    /// Bytes held: encoded spans plus the per-span rows and index entries.
    pub fn bytes(&self) -> usize {
        self.arena.len() + self.rows.len() * (std::mem::size_of::<SpanRow>() + 24)
    }

    fn group_id(&mut self, resource: &Resource, scope: &Scope) -> u32 {
        let mut encoded = Vec::new();
        codec::put_group(&mut encoded, resource, scope);
        let h = xxh3_64(&encoded);
        if let Some(ids) = self.group_by_hash.get(&h)
            && let Some(&id) = ids
                .iter()
                .find(|&&id| self.groups[id as usize].encoded == encoded)
        {
            return id;
        }
        let id = self.groups.len() as u32;
        let service = self.strings.intern(resource.service_name());
        self.groups.push(Arc::new(Group {
            resource: resource.clone(),
            scope: scope.clone(),
            service,
            encoded,
        }));
        self.group_by_hash.entry(h).or_default().push(id);
        id
    }

    /// Adds a batch; appends the WAL record payload for it to `wal_payload` (the same
    /// bytes, so the log holds exactly what the head holds).
    pub fn apply(&mut self, batch: &SpanBatch, wal_payload: &mut Vec<u8>) {
        if self.created.is_none() {
            self.created = Some(std::time::Instant::now());
        }
        let groups: Vec<_> = batch
            .resources
            .iter()
            .flat_map(|r| r.scopes.iter().map(move |s| (&*r.resource, s)))
            .filter(|(_, s)| !s.spans.is_empty())
            .collect();
        put_uvarint(wal_payload, groups.len() as u64);
        for (resource, ss) in groups {
            let gid = self.group_id(resource, &ss.scope);
            wal_payload.extend_from_slice(&self.groups[gid as usize].encoded);
            put_uvarint(wal_payload, ss.spans.len() as u64);
            for span in &ss.spans {
                let offset = self.arena.len();
                codec::put_span(&mut self.arena, span);
                wal_payload.extend_from_slice(&self.arena[offset..]);
                self.add_row(span, gid, offset);
            }
        }
    }

    fn add_row(&mut self, span: &Span, group: u32, offset: usize) {
        let idx = self.rows.len() as u32;
        let name = self.strings.intern(&span.name);
        self.rows.push(SpanRow {
            trace_id: span.trace_id,
            offset,
            len: (self.arena.len() - offset) as u32,
            group,
            name,
            start_ns: span.start_unix_nano,
            duration_ns: span.duration_nanos(),
            status: span.status_code,
            root: span.is_root(),
        });
        self.by_trace.entry(span.trace_id).or_default().push(idx);
        self.operations
            .insert((self.groups[group as usize].service, name));
    }

    /// Replays a WAL record written by [`Head::apply`].
    pub fn replay(&mut self, payload: &[u8]) -> Result<usize, DecodeError> {
        let batch = codec::get_batch(&mut Decoder::new(payload))?;
        let mut scratch = Vec::new();
        self.apply(&batch, &mut scratch);
        Ok(batch.span_count())
    }

    pub(crate) fn span(&self, row: &SpanRow) -> Result<Span, DecodeError> {
        let bytes = &self.arena[row.offset..row.offset + row.len as usize];
        codec::get_span(&mut Decoder::new(bytes))
    }

    /// Every span of a trace with its group.
    pub fn trace(&self, id: TraceId) -> Result<Vec<(Arc<Group>, Span)>, DecodeError> {
        let Some(idx) = self.by_trace.get(&id) else {
            return Ok(Vec::new());
        };
        idx.iter()
            .map(|&i| {
                let row = &self.rows[i as usize];
                Ok((self.groups[row.group as usize].clone(), self.span(row)?))
            })
            .collect()
    }

    pub fn search(&self, q: &TraceQuery) -> Result<Vec<TraceSummary>, DecodeError> {
        let mut out = Vec::new();
        for (trace_id, idx) in &self.by_trace {
            let mut b = SummaryBuilder::default();
            let mut span_hit = !q.has_span_conditions();
            for &i in idx {
                let row = &self.rows[i as usize];
                let group = &self.groups[row.group as usize];
                let service = self.strings.get(group.service);
                let name = self.strings.get(row.name);
                b.add(
                    group.service,
                    row.name,
                    row.start_ns,
                    row.start_ns.saturating_add(row.duration_ns),
                    row.status,
                    row.root,
                );
                if !span_hit && q.row_matches(service, name, row.status) {
                    span_hit = q.tags.is_empty() || q.tags_match(&group.resource, &self.span(row)?);
                }
            }
            if span_hit && q.time_overlaps(b.start(), b.end()) && q.duration_ok(b.end() - b.start())
            {
                out.push(b.finish(*trace_id, |id| self.strings.get(id)));
            }
        }
        Ok(out)
    }

    /// Every trace id in the head.
    pub fn trace_ids(&self) -> Vec<TraceId> {
        self.by_trace.keys().copied().collect()
    }

    /// Spans of one trace in the head.
    pub fn trace_span_count(&self, id: &TraceId) -> usize {
        self.by_trace.get(id).map_or(0, Vec::len)
    }

    /// Every (service, span name) pair seen, for autocompletion.
    pub fn operations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.operations
            .iter()
            .map(|&(s, n)| (self.strings.get(s), self.strings.get(n)))
    }
}
