//! Where a datastore's bytes live, and how to open them again.
//!
//! A [`StoreSource`] can open its database any number of times: the
//! datastore reopens itself after an I/O error (redb refuses every write
//! after one until the database is closed and opened again). Besides a
//! plain file it can be
//!
//! - a file on a simulated small disk ([`StoreSource::File`] with a
//!   `disk_limit`): every write or growth past the limit fails with
//!   `ENOSPC`, exactly as on a full filesystem. Tests use it (through the
//!   node's `store_disk_limit` setting) to exercise the disk-full path
//!   without a real small filesystem;
//! - any [`StorageBackend`] a factory makes ([`StoreSource::Backend`]):
//!   tests use it to simulate power loss.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use redb::backends::FileBackend;
use redb::{BackendError, Builder, Database, StorageBackend};

use super::cache::SlotCache;
use super::slots::Slots;
use super::StoreError;

/// Makes a fresh backend over the same storage each time it is called.
pub type BackendFactory =
    Arc<dyn Fn() -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync + 'static>;

/// What a datastore opens (and reopens).
#[derive(Clone)]
pub enum StoreSource {
    /// A file; with `disk_limit`, the file behaves as if it sat on a disk
    /// with that many bytes free for it.
    File {
        path: PathBuf,
        disk_limit: Option<u64>,
    },
    /// Whatever `open` returns; `name` is what logs and errors show.
    Backend { name: String, open: BackendFactory },
}

impl fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSource::File { path, disk_limit } => f
                .debug_struct("File")
                .field("path", path)
                .field("disk_limit", disk_limit)
                .finish(),
            StoreSource::Backend { name, .. } => f.debug_tuple("Backend").field(name).finish(),
        }
    }
}

impl StoreSource {
    /// The file, or the backend's name as a path.
    pub fn path(&self) -> &Path {
        match self {
            StoreSource::File { path, .. } => path,
            StoreSource::Backend { name, .. } => Path::new(name),
        }
    }

    fn open_error(&self, source: redb::DatabaseError) -> StoreError {
        StoreError::Open {
            path: self.path().to_path_buf(),
            source,
        }
    }

    /// Open for reading and writing (creating the file if needed).
    pub(super) fn open(&self, builder: &Builder) -> Result<Database, StoreError> {
        match self {
            StoreSource::File { path, disk_limit } => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|e| self.open_error(e.into()))?;
                let inner = Reserve::new(file).map_err(|e| self.open_error(e))?;
                match disk_limit {
                    None => builder.create_with_backend(inner),
                    Some(limit) => builder.create_with_backend(DiskLimit {
                        inner,
                        limit: *limit,
                    }),
                }
                .map_err(|e| self.open_error(e))
            }
            StoreSource::Backend { open, .. } => {
                let backend = open().map_err(|e| self.open_error(e.into()))?;
                builder
                    .create_with_backend(DynBackend(backend))
                    .map_err(|e| self.open_error(e))
            }
        }
    }

    /// Open the cache part for `slots` slots: the slot files beside the
    /// database file, or memory for a [`StoreSource::Backend`].
    pub(super) fn open_cache(&self, slots: u64) -> Result<SlotCache, StoreError> {
        let slots = u32::try_from(slots).unwrap_or(u32::MAX);
        let path = self.path().to_path_buf();
        let opened = match self {
            StoreSource::File { path, .. } => {
                Slots::open(path, slots).and_then(|(s, keep)| SlotCache::new(s, slots, keep))
            }
            StoreSource::Backend { .. } => SlotCache::new(Slots::memory(), slots, 0),
        };
        opened.map_err(|source| StoreError::CacheOpen { path, source })
    }

    /// Open without ever writing to the storage, as a last resort when
    /// opening for writing failed. redb's own read-only open refuses a file
    /// that was not closed cleanly (as after an I/O error), so this opens
    /// it for writing over an [`Overlay`] that keeps every write in memory:
    /// redb's repair runs there, and the file is left as it was. The
    /// datastore makes no writes of its own in this state.
    pub(super) fn open_read_only(&self, builder: &Builder) -> Result<Database, StoreError> {
        let inner: Box<dyn StorageBackend> = match self {
            StoreSource::File { path, .. } => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .open(path)
                    .map_err(|e| self.open_error(e.into()))?;
                Box::new(FileBackend::new(file).map_err(|e| self.open_error(e))?)
            }
            StoreSource::Backend { open, .. } => open().map_err(|e| self.open_error(e.into()))?,
        };
        let overlay = Overlay {
            inner,
            state: Mutex::default(),
        };
        builder
            .create_with_backend(overlay)
            .map_err(|e| self.open_error(e))
    }
}

/// `ENOSPC`, as a full filesystem reports it.
pub fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOSPC)
}

/// A file that cannot grow past `limit` bytes: writes or a length past it
/// fail with `ENOSPC`.
#[derive(Debug)]
struct DiskLimit {
    inner: Reserve,
    limit: u64,
}

impl DiskLimit {
    fn check(&self, end: u64) -> std::io::Result<()> {
        match end > self.limit {
            true => Err(no_space()),
            false => Ok(()),
        }
    }
}

/// Forward the locking methods of [`StorageBackend`] to `self.$field`.
macro_rules! forward_locks {
    ($field:tt) => {
        fn close(&self) -> Result<(), std::io::Error> {
            self.$field.close()
        }
        fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
            self.$field.try_lock_range(s, e)
        }
        fn try_lock_shared_range(
            &self,
            s: Bound<u64>,
            e: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.$field.try_lock_shared_range(s, e)
        }
        fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.$field.lock_range(s, e)
        }
        fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.$field.lock_shared_range(s, e)
        }
        fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.$field.unlock_range(s, e)
        }
        fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
            self.$field.query_lock_range(s, e)
        }
    };
}

impl StorageBackend for DiskLimit {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check(len)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check(offset.saturating_add(data.len() as u64))?;
        self.inner.write(offset, data)
    }
    forward_locks!(inner);
}

/// How far past a write [`Reserve`] allocates the file's blocks.
const RESERVE_AHEAD: u64 = 8 << 20;

/// A file whose blocks are allocated ahead of redb's writes, 8 MiB at a
/// time (`fallocate` with `FALLOC_FL_KEEP_SIZE`: redb still decides the
/// file's length). redb grows its file with `set_len`, which leaves a hole,
/// and then writes pages into the hole; without this the filesystem
/// allocates blocks on every write (on ext4 that was a third of the cache
/// writer's time in `pwrite`). Allocation follows the highest write, so
/// holes an older file still has below it are left alone. It is best
/// effort: where `fallocate` fails (a full disk, a filesystem without it)
/// the write goes ahead as before and fails or succeeds on its own.
#[derive(Debug)]
struct Reserve {
    inner: FileBackend,
    /// The same file, for `fallocate`.
    file: std::fs::File,
    /// Allocated up to here (as far as this backend knows).
    reserved: std::sync::atomic::AtomicU64,
}

impl Reserve {
    fn new(file: std::fs::File) -> Result<Reserve, redb::DatabaseError> {
        let own = file.try_clone()?;
        Ok(Reserve {
            inner: FileBackend::new(file)?,
            file: own,
            reserved: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Allocate from `offset` (or the end of what is allocated) to
    /// `RESERVE_AHEAD` past `end`.
    fn reserve(&self, offset: u64, end: u64) {
        use std::sync::atomic::Ordering;
        let from = offset.max(self.reserved.load(Ordering::Relaxed));
        let to = end.saturating_add(RESERVE_AHEAD);
        if allocate(&self.file, from, to).is_err() {
            tracing::debug!(from, to, "datastore: cannot allocate ahead of writes");
        }
        // Even after a failure: the next attempt is past this range.
        self.reserved.fetch_max(to, Ordering::Relaxed);
    }
}

/// `fallocate(KEEP_SIZE)` over `from..to` of `file`.
#[cfg(target_os = "linux")]
pub(super) fn allocate(file: &std::fs::File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let start = libc::off_t::try_from(from).map_err(std::io::Error::other)?;
    let len = libc::off_t::try_from(to.saturating_sub(from)).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate on a descriptor `file` owns; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, start, len) };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn allocate(_file: &std::fs::File, _from: u64, _to: u64) -> std::io::Result<()> {
    Ok(())
}

impl StorageBackend for Reserve {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        // Cutting the file frees what was allocated past the cut.
        self.reserved
            .fetch_min(len, std::sync::atomic::Ordering::Relaxed);
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.reserved.load(std::sync::atomic::Ordering::Relaxed) {
            self.reserve(offset, end);
        }
        self.inner.write(offset, data)
    }
    forward_locks!(inner);
}

/// A boxed backend, so that a factory can return any kind.
#[derive(Debug)]
struct DynBackend(Box<dyn StorageBackend>);

impl StorageBackend for DynBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    forward_locks!(0);
}

/// Pages of an [`Overlay`].
const PAGE: u64 = 4096;

#[derive(Debug, Default)]
struct OverlayState {
    /// Length as written through the overlay (`None`: the inner length).
    len: Option<u64>,
    pages: HashMap<u64, Box<[u8]>>,
}

/// A backend that reads through to `inner` but keeps every write in
/// memory, so that the storage itself is never modified.
#[derive(Debug)]
struct Overlay {
    inner: Box<dyn StorageBackend>,
    state: Mutex<OverlayState>,
}

impl Overlay {
    fn lock(&self) -> std::sync::MutexGuard<'_, OverlayState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Page `index` as the inner storage has it (zeros past its end).
    fn inner_page(&self, index: u64, inner_len: u64) -> std::io::Result<Box<[u8]>> {
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        let end = (start + PAGE).min(inner_len);
        if start < end {
            let n = usize::try_from(end - start).map_err(std::io::Error::other)?;
            self.inner.read(start, &mut page[..n])?;
        }
        Ok(page)
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> Result<u64, std::io::Error> {
        match self.lock().len {
            Some(len) => Ok(len),
            None => self.inner.len(),
        }
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let state = self.lock();
        let inner_len = self.inner.len()?;
        let end = offset.saturating_add(out.len() as u64);
        if end > state.len.unwrap_or(inner_len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end",
            ));
        }
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let within = (at % PAGE) as usize;
            let n = ((PAGE - at % PAGE).min(end - at)) as usize;
            let dst = (at - offset) as usize;
            match state.pages.get(&index) {
                Some(page) => out[dst..dst + n].copy_from_slice(&page[within..within + n]),
                None if at + n as u64 <= inner_len => {
                    self.inner.read(at, &mut out[dst..dst + n])?;
                }
                None => {
                    let page = self.inner_page(index, inner_len)?;
                    out[dst..dst + n].copy_from_slice(&page[within..within + n]);
                }
            }
            at += n as u64;
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut state = self.lock();
        let old = state.len.map_or_else(|| self.inner.len(), Ok)?;
        if len < old {
            // Zero what is cut off, so that growing again reads zeros.
            let inner_len = self.inner.len()?;
            let first = len / PAGE;
            for index in first..old.div_ceil(PAGE) {
                let mut page = match state.pages.remove(&index) {
                    Some(page) => page,
                    None => self.inner_page(index, inner_len)?,
                };
                let from = len.saturating_sub(index * PAGE).min(PAGE) as usize;
                page[from..].fill(0);
                state.pages.insert(index, page);
            }
        }
        state.len = Some(len);
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut state = self.lock();
        let inner_len = self.inner.len()?;
        let end = offset.saturating_add(data.len() as u64);
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let within = (at % PAGE) as usize;
            let n = ((PAGE - at % PAGE).min(end - at)) as usize;
            let src = (at - offset) as usize;
            let page = match state.pages.entry(index) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(self.inner_page(index, inner_len)?)
                }
            };
            page[within..within + n].copy_from_slice(&data[src..src + n]);
            at += n as u64;
        }
        let len = state.len.unwrap_or(inner_len);
        state.len = Some(len.max(end));
        Ok(())
    }
    forward_locks!(inner);
}
