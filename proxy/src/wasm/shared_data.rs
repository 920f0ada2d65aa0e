//! Shared data and shared queues: the state plugins keep across contexts, instances and worker
//! threads, scoped by VM id as in Envoy. Each operation takes one short lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

/// Key-value data with a version (`cas`) per key, for compare-and-swap.
#[derive(Debug, Default)]
pub struct SharedData {
    entries: Mutex<HashMap<(String, String), (Bytes, u32)>>,
}

/// Why a set was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct CasMismatch;

impl SharedData {
    pub fn get(&self, vm_id: &str, key: &str) -> Option<(Bytes, u32)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&(vm_id.to_owned(), key.to_owned())).cloned()
    }

    /// Sets `key`; with a non-zero `cas`, only if the key's version is still `cas`.
    pub fn set(&self, vm_id: &str, key: &str, value: Bytes, cas: u32) -> Result<(), CasMismatch> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get_mut(&(vm_id.to_owned(), key.to_owned())) {
            Some((current, version)) => {
                if cas != 0 && cas != *version {
                    return Err(CasMismatch);
                }
                *current = value;
                // 0 means "no version" to the SDKs, so it is skipped.
                *version = version.wrapping_add(1).max(1);
            }
            None => {
                if cas != 0 {
                    return Err(CasMismatch);
                }
                entries.insert((vm_id.to_owned(), key.to_owned()), (value, 1));
            }
        }
        Ok(())
    }

    /// Creates `key` unless it exists; returns whether it did.
    pub fn insert(&self, vm_id: &str, key: &str, value: Bytes) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.entry((vm_id.to_owned(), key.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((value, 1));
                true
            }
        }
    }
}

struct Queue {
    items: VecDeque<Bytes>,
    /// The root context that registered the queue last (where its instance hears, and its
    /// id), told of each enqueue.
    owner: Option<(UnboundedSender<(u32, u32)>, u32)>,
}

#[derive(Default)]
struct QueueTable {
    ids: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
}

/// Named queues: any context may enqueue; the registering root context is told when items
/// arrive (`on_queue_ready`) and dequeues them.
#[derive(Default)]
pub struct SharedQueues {
    table: Mutex<QueueTable>,
}

impl std::fmt::Debug for SharedQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedQueues")
    }
}

/// A queue id that names no queue.
#[derive(Debug, PartialEq, Eq)]
pub struct NoSuchQueue;

/// Most items one queue holds; an enqueue beyond it drops the oldest, so that a queue nobody
/// drains cannot grow without bound.
const QUEUE_LIMIT: usize = 10_000;

impl SharedQueues {
    /// Registers (or takes over) a queue; returns its id.
    pub fn register(
        &self,
        vm_id: &str,
        name: &str,
        owner: Option<(UnboundedSender<(u32, u32)>, u32)>,
    ) -> u32 {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let key = (vm_id.to_owned(), name.to_owned());
        let next = u32::try_from(table.ids.len() + 1).unwrap_or(u32::MAX);
        let id = *table.ids.entry(key).or_insert(next);
        let queue = table.queues.entry(id).or_insert_with(|| Queue {
            items: VecDeque::new(),
            owner: None,
        });
        queue.owner = owner;
        id
    }

    pub fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.ids.get(&(vm_id.to_owned(), name.to_owned())).copied()
    }

    /// Adds an item; `None` when there is no such queue.
    pub fn enqueue(&self, id: u32, item: Bytes) -> Option<()> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let queue = table.queues.get_mut(&id)?;
        if queue.items.len() >= QUEUE_LIMIT {
            queue.items.pop_front();
        }
        queue.items.push_back(item);
        if let Some((events, root)) = &queue.owner
            && events.send((*root, id)).is_err()
        {
            queue.owner = None;
        }
        Some(())
    }

    /// Takes the oldest item: `Err` when there is no such queue, `Ok(None)` when it is empty.
    pub fn dequeue(&self, id: u32) -> Result<Option<Bytes>, NoSuchQueue> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let queue = table.queues.get_mut(&id).ok_or(NoSuchQueue)?;
        Ok(queue.items.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap() {
        let data = SharedData::default();
        assert_eq!(data.set("", "k", Bytes::from("1"), 7), Err(CasMismatch));
        data.set("", "k", Bytes::from("1"), 0).unwrap();
        let (_, cas) = data.get("", "k").unwrap();
        data.set("", "k", Bytes::from("2"), cas).unwrap();
        assert_eq!(data.set("", "k", Bytes::from("3"), cas), Err(CasMismatch));
        assert_eq!(data.get("", "k").unwrap().0, Bytes::from("2"));
        assert!(data.get("other-vm", "k").is_none());
    }

    #[test]
    fn queues() {
        let queues = SharedQueues::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let id = queues.register("", "q", Some((tx, 7)));
        assert_eq!(queues.resolve("", "q"), Some(id));
        assert_eq!(queues.resolve("", "other"), None);
        queues.enqueue(id, Bytes::from("a")).unwrap();
        assert_eq!(rx.try_recv().unwrap(), (7, id));
        assert_eq!(queues.dequeue(id).unwrap(), Some(Bytes::from("a")));
        assert_eq!(queues.dequeue(id).unwrap(), None);
        assert!(queues.dequeue(id + 1).is_err());
    }
}
