//! Interned label strings with reference counts, so each distinct name or value is kept
//! once however many series carry it, and freed when the last such series goes.

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

pub type SymbolId = u32;

#[derive(Default)]
pub struct Symbols {
    strings: Vec<Option<Box<str>>>,
    refs: Vec<u32>,
    free: Vec<SymbolId>,
    table: HashTable<SymbolId>,
    heap_bytes: usize,
}

impl Symbols {
    pub fn get(&self, id: SymbolId) -> &str {
        self.strings[id as usize].as_deref().unwrap_or("")
    }

    pub fn lookup(&self, s: &str) -> Option<SymbolId> {
        let strings = &self.strings;
        self.table
            .find(xxh3_64(s.as_bytes()), |&id| {
                strings[id as usize].as_deref() == Some(s)
            })
            .copied()
    }

    /// Returns the id of `s`, adding it if new, and takes one reference.
    pub fn intern(&mut self, s: &str) -> SymbolId {
        let hash = xxh3_64(s.as_bytes());
        let strings = &self.strings;
        if let Some(&id) = self
            .table
            .find(hash, |&id| strings[id as usize].as_deref() == Some(s))
        {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.strings[id as usize] = Some(s.into());
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.strings.push(Some(s.into()));
                self.refs.push(1);
                (self.strings.len() - 1) as SymbolId
            }
        };
        self.heap_bytes += s.len();
        let strings = &self.strings;
        self.table.insert_unique(hash, id, |&id| {
            xxh3_64(strings[id as usize].as_deref().unwrap_or("").as_bytes())
        });
        id
    }

    /// Drops one reference; the string is freed with the last one.
    pub fn release(&mut self, id: SymbolId) {
        let refs = &mut self.refs[id as usize];
        *refs -= 1;
        if *refs > 0 {
            return;
        }
        let s = self.strings[id as usize].take().unwrap_or_default();
        self.heap_bytes -= s.len();
        let hash = xxh3_64(s.as_bytes());
        if let Ok(entry) = self.table.find_entry(hash, |&x| x == id) {
            entry.remove();
        }
        self.free.push(id);
    }

    pub fn len(&self) -> usize {
        self.strings.len() - self.free.len()
    }

    /// Approximate memory held, for self-metrics.
    pub fn memory_bytes(&self) -> usize {
        self.heap_bytes
            + self.strings.capacity() * (16 + 4)
            + self.table.capacity() * 5
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_frees_with_last_reference() {
        let mut s = Symbols::default();
        let a = s.intern("job");
        assert_eq!(s.intern("job"), a);
        assert_eq!(s.get(a), "job");
        s.release(a);
        assert_eq!(s.lookup("job"), Some(a));
        s.release(a);
        assert_eq!(s.lookup("job"), None);
        let b = s.intern("instance");
        assert_eq!(b, a, "freed ids are reused");
        assert_eq!(s.len(), 1);
    }
}
