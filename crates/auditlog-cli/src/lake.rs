//! OCSF-mapped Parquet for data lakes: files that DuckDB, Spark, Athena or
//! Security Lake read, partitioned by OCSF class and day, sorted by time
//! inside each file, zstd-compressed, with flat typed columns.
//!
//! An export directory is incremental and exact: it records which log it
//! holds and up to which LSN (`_auditlog_export.json`), so the next run
//! exports only what is new. A run's files are written beside their final
//! names as `….parquet.tmp`, listed in `_auditlog_commit.json`, then
//! renamed into place; a run stopped at any point is rolled back (no commit
//! list) or forward (a commit list) by the next, so every event is in the
//! directory once or not at all.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::catalog::ocsf::{self, OCSF_VERSION};
use auditlog::{EventFields, Severity, Timestamp};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use parquet::schema::types::{SchemaDescriptor, Type};
use serde::{Deserialize, Serialize};

mod keyed;

/// The Parquet schema of every file (docs/EXPORT.md describes each column).
pub const SCHEMA: &str = "message ocsf_event {
  required int64 time (TIMESTAMP(NANOS,true));
  required int64 lsn;
  required binary auditlog_type (UTF8);
  required int32 class_uid;
  required binary class_name (UTF8);
  required int32 category_uid;
  required binary category_name (UTF8);
  required int32 activity_id;
  required binary activity_name (UTF8);
  required int64 type_uid;
  required binary type_name (UTF8);
  required int32 severity_id;
  required binary severity (UTF8);
  required int32 status_id;
  required binary status (UTF8);
  optional binary status_code (UTF8);
  required binary metadata_log_level (UTF8);
  optional binary metadata_log_provider (UTF8);
  optional binary message (UTF8);
  optional binary actor_user_name (UTF8);
  optional binary actor_user_uid (UTF8);
  optional binary actor_user_account_name (UTF8);
  optional binary actor_user_account_uid (UTF8);
  optional binary actor_session_uid (UTF8);
  optional binary src_endpoint_ip (UTF8);
  optional binary entity_type (UTF8);
  optional binary entity_uid (UTF8);
  optional binary entity_name (UTF8);
  optional binary unmapped_attrs (JSON);
}";

/// The file that says which log the directory holds, and up to where.
pub const STATE_FILE: &str = "_auditlog_export.json";
/// The list of a run's files, written before they are renamed into place.
pub const COMMIT_FILE: &str = "_auditlog_commit.json";
/// The file a run holds a lock on: one export into a directory at a time.
pub const LOCK_FILE: &str = "_auditlog_export.lock";
const TMP_SUFFIX: &str = ".tmp";

/// Rows a file takes before it is finished and the next part begun.
pub const MAX_FILE_ROWS: usize = 4 << 20;
/// Rows buffered per partition before they are sorted and written as one
/// row group.
pub const ROW_GROUP_ROWS: usize = 1 << 17;
/// Rows all partitions' buffers hold together before the largest is written
/// out: with [`OPEN_PARTITIONS`], what bounds an export's memory whatever
/// the log's size.
pub const BUFFERED_ROWS: usize = 1 << 17;
/// Bytes of text all buffers hold together (events can carry up to a MiB
/// each, so rows alone do not bound memory); also what keeps a buffer's
/// text offsets within 32 bits.
pub const BUFFERED_BYTES: usize = 64 << 20;
/// Partitions with a file open at once; the least recently used is
/// finished when one more is needed (bounds memory and descriptors).
pub const OPEN_PARTITIONS: usize = 32;

/// Columns without min/max statistics: captions (their ids have them) and
/// every per-event text. Rows are sorted by time, so within a file those
/// values are not clustered and their ranges would prune nothing; and a
/// statistic keeps a reference to the buffer its value came from until the
/// file is finished, which would hold every row group's text in memory.
/// Statistics stay on time, LSN, the ids and the type.
const NO_STATISTICS: [&str; 19] = [
    "class_name",
    "category_name",
    "activity_name",
    "type_name",
    "severity",
    "status",
    "status_code",
    "metadata_log_provider",
    "message",
    "actor_user_name",
    "actor_user_uid",
    "actor_user_account_name",
    "actor_user_account_uid",
    "actor_session_uid",
    "src_endpoint_ip",
    "entity_type",
    "entity_uid",
    "entity_name",
    "unmapped_attrs",
];

/// The zstd level of the files' pages.
pub const ZSTD_LEVEL: i32 = 1;

/// How the directory is laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "layout")]
pub enum Layout {
    /// `class_uid=3002/day=2026-11-23/part-….parquet`
    Hive,
    /// Amazon Security Lake's custom sources, one per class:
    /// `ext/SOURCE-CLASS/region=R/accountId=A/eventDay=YYYYMMDD/part-….parquet`
    SecurityLake {
        /// The custom source's name (the class uid is appended).
        source: String,
        /// The lake's AWS region.
        region: String,
        /// The AWS account the events come from.
        account_id: String,
    },
}

impl Layout {
    fn dir(&self, class_uid: u32, day: &Day) -> PathBuf {
        match self {
            Layout::Hive => PathBuf::from(format!(
                "class_uid={class_uid}/day={:04}-{:02}-{:02}",
                day.0, day.1, day.2
            )),
            Layout::SecurityLake {
                source,
                region,
                account_id,
            } => PathBuf::from(format!(
                "ext/{source}-{class_uid}/region={region}/accountId={account_id}/eventDay={:04}{:02}{:02}",
                day.0, day.1, day.2
            )),
        }
    }
}

/// What an export directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeState {
    /// The log's identity (hex).
    pub log_id: String,
    /// Every record up to this LSN has been looked at (and exported if it
    /// matched the run's filter).
    pub through_lsn: u64,
    /// The layout, which later runs must keep.
    pub layout: Layout,
    /// Files in the directory.
    pub files: u64,
    /// Events in them.
    pub events: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    files: Vec<PathBuf>,
    state: LakeState,
}

/// Something wrong with an export directory or the writing of it.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The file system said no.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: std::io::Error,
    },
    /// The Parquet writer said no.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// Where.
        path: PathBuf,
        /// What.
        source: parquet::errors::ParquetError,
    },
    /// Another export holds the directory's lock.
    #[error("{path}: another export is writing into this directory (its lock is held)")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// A state or commit file that is not ours or not whole.
    #[error("{path}: {what}")]
    Damaged {
        /// Where.
        path: PathBuf,
        /// What.
        what: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> LakeError + '_ {
    move |source| LakeError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn fsync_dir(dir: &Path) -> Result<(), LakeError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, LakeError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| LakeError::Damaged {
                path: path.to_path_buf(),
                what: format!("not an export state auditlog wrote ({e})"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The lock of an export directory, held for as long as this lives (two
/// runs into one directory at once would both start from its state and
/// export the same events twice).
#[derive(Debug)]
pub struct LakeLock {
    _file: File,
}

/// Takes the directory's lock (creating the directory if missing), or says
/// that another run holds it.
///
/// # Errors
/// The directory cannot be made, or another export is writing into it.
pub fn lock(out: &Path) -> Result<LakeLock, LakeError> {
    use std::os::fd::AsRawFd;
    fs::create_dir_all(out).map_err(io(out))?;
    let path = out.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            LakeError::Busy { path }
        } else {
            io(&path)(e)
        });
    }
    Ok(LakeLock { _file: file })
}

/// Finishes or undoes a run that stopped (see the module's comment), then
/// says what the directory holds (`None` if it holds no export yet).
///
/// # Errors
/// The directory cannot be read or written, or its state file is damaged.
pub fn recover(out: &Path) -> Result<Option<LakeState>, LakeError> {
    let commit_path = out.join(COMMIT_FILE);
    if let Some(commit) = read_json::<Commit>(&commit_path)? {
        // Only files of this directory's own shape are renamed: a commit
        // list edited to name anything else is refused, not followed.
        if let Some(bad) = commit.files.iter().find(|f| !is_part_path(f)) {
            return Err(LakeError::Damaged {
                path: commit_path,
                what: format!("names {bad:?}, not a part file of this directory"),
            });
        }
        // Roll forward: each file is either still .tmp or already in place.
        for f in &commit.files {
            let dest = out.join(f);
            let tmp = tmp_name(&dest);
            if tmp.exists() {
                fs::rename(&tmp, &dest).map_err(io(&dest))?;
            } else if !dest.exists() {
                return Err(LakeError::Damaged {
                    path: dest,
                    what: "listed in the commit but neither written nor renamed".into(),
                });
            }
            fsync_dir(dest.parent().unwrap_or(out))?;
        }
        write_atomic(&out.join(STATE_FILE), &to_json(&commit.state))?;
        fs::remove_file(&commit_path).map_err(io(&commit_path))?;
    }
    // Roll back: .tmp files no commit lists.
    remove_tmp(out)?;
    read_json(&out.join(STATE_FILE))
}

/// Every file under `dir` whose name ends in `suffix`, in path order (none
/// if `dir` is missing).
///
/// # Errors
/// A directory that exists cannot be read.
fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, LakeError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&d)(e)),
        };
        for e in entries {
            let e = e.map_err(io(&d))?;
            let p = e.path();
            if e.file_type().map_err(io(&p))?.is_dir() {
                stack.push(p);
            } else if e.file_name().to_str().is_some_and(|n| n.ends_with(suffix)) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The Parquet files of an export directory (what engines read), in path
/// order.
///
/// # Errors
/// A directory under `out` cannot be read.
pub fn part_files(out: &Path) -> Result<Vec<PathBuf>, LakeError> {
    files_ending(out, ".parquet")
}

/// The highest LSN the part files under `out` name (`part-FIRST-LAST-N`:
/// the LAST of the run that wrote them), if any: what a directory whose
/// state file is gone holds up to.
///
/// # Errors
/// A directory under `out` cannot be read.
pub fn newest_part_lsn(out: &Path) -> Result<Option<u64>, LakeError> {
    Ok(part_files(out)?
        .iter()
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?;
            let rest = n.strip_prefix("part-")?.strip_suffix(".parquet")?;
            rest.split('-').nth(1)?.parse::<u64>().ok()
        })
        .max())
}

/// A relative path of plain names ending in a `part-….parquet` file.
fn is_part_path(p: &Path) -> bool {
    use std::path::Component;
    p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("plain data serializes");
    b.push(b'\n');
    b
}

fn tmp_name(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

fn remove_tmp(dir: &Path) -> Result<(), LakeError> {
    for p in files_ending(dir, ".parquet.tmp")? {
        fs::remove_file(&p).map_err(io(&p))?;
    }
    Ok(())
}

/// A day in UTC: (year, month, day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Day(i32, u8, u8);

const DAY_NS: i64 = 86_400_000_000_000;

fn day_of(t: Timestamp) -> Day {
    let days = t.0.div_euclid(DAY_NS);
    match time::OffsetDateTime::from_unix_timestamp(days * 86_400) {
        Ok(d) => Day(d.year(), u8::from(d.month()), d.day()),
        Err(_) => Day(1970, 1, 1),
    }
}

/// What every event of one type shares: its mapping and the column values
/// that follow from it, built once per type per run.
#[derive(Clone)]
struct TypeInfo {
    mapping: &'static ocsf::OcsfMapping,
    auditlog_type: ByteArray,
}

fn static_bytes(s: &'static str) -> ByteArray {
    ByteArray::from(Bytes::from_static(s.as_bytes()))
}

/// FNV-1a: type names are short and few, and SipHash cost more than the
/// rest of the lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A string of the arena: where it starts and its length.
type Span = (u32, u32);

/// A partition's rows waiting to be written, column by column. The text of
/// the optional columns is copied into one arena per buffer, not one
/// allocation per value; shared values (per type, per severity) are
/// reference-counted or static.
#[derive(Default)]
struct Columns {
    time: Vec<i64>,
    lsn: Vec<i64>,
    types: Vec<u32>,
    severity: Vec<u8>,
    status: Vec<(u8, &'static str)>,
    arena: Vec<u8>,
    /// The optional columns: per row, its text in the arena, if any.
    opt: [Vec<Option<Span>>; OPTIONAL],
}

const OPTIONAL: usize = 13;

impl Columns {
    fn len(&self) -> usize {
        self.lsn.len()
    }

    fn text(&mut self, s: &str) -> Span {
        let at = self.arena.len() as u32;
        self.arena.extend_from_slice(s.as_bytes());
        (at, s.len() as u32)
    }

    fn push(&mut self, lsn: u64, ty: u32, info: &TypeInfo, e: &EventFields<'_>) {
        self.time.push(e.time.0);
        self.lsn.push(lsn as i64);
        self.types.push(ty);
        self.severity.push(e.severity.code());
        self.status.push(info.mapping.status.resolve(e.result));
        let mut num = itoa_buf::Buf::default();
        let mut k = 0;
        let mut put = |c: &mut Columns, v: Option<&str>| {
            let span = v.map(|v| c.text(v));
            c.opt[k].push(span);
            k += 1;
        };
        let result = e.result.map(|r| num.int(r));
        put(self, result);
        put(self, e.source);
        put(self, e.data);
        put(self, e.actor);
        put(self, e.actor_id);
        put(self, e.actor_account);
        put(self, e.account_id);
        put(self, e.session);
        let mut ip_buf = itoa_buf::Buf::default();
        let mut ip_text = String::new();
        let ip = e.ip.map(|a| match a {
            std::net::IpAddr::V4(v4) => ip_buf.ipv4(v4),
            std::net::IpAddr::V6(v6) => {
                use std::fmt::Write as _;
                let _ = write!(ip_text, "{v6}");
                ip_text.as_str()
            }
        });
        put(self, ip);
        put(self, e.entity_type);
        put(self, e.entity_id);
        put(self, e.entity_name);
        if e.attrs.is_empty() {
            put(self, None);
        } else {
            let m: serde_json::Map<String, serde_json::Value> = e
                .attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
                .collect();
            put(self, Some(&serde_json::Value::Object(m).to_string()));
        }
    }

    /// The rows in time order (then LSN): the order of the rows, not a copy.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if !self.time.windows(2).all(|w| w[0] <= w[1]) {
            order.sort_by_key(|&i| (self.time[i], self.lsn[i]));
        }
        order
    }
}

/// One partition: its open file, if any, and the rows waiting for it.
struct Partition {
    dir: PathBuf,
    buffer: Columns,
    file: Option<OpenFile>,
    parts: u32,
    last_use: u64,
}

struct OpenFile {
    path: PathBuf,
    writer: SerializedFileWriter<BufWriter<File>>,
    rows: usize,
    max_time: i64,
    first_lsn: u64,
    last_lsn: u64,
}

/// A run of the export: events in, files out, committed at the end.
pub struct LakeWriter {
    out: PathBuf,
    layout: Layout,
    schema: Arc<Type>,
    columns: SchemaDescriptor,
    props: Arc<WriterProperties>,
    partitions: HashMap<(u32, i64), Partition, BuildHasherDefault<Fnv>>,
    types: Vec<TypeInfo>,
    /// Rows in all partitions' buffers.
    buffered: usize,
    /// Bytes of text in all partitions' buffers.
    buffered_bytes: usize,
    type_ids: HashMap<String, u32, BuildHasherDefault<Fnv>>,
    run: (u64, u64),
    clock: u64,
    written: Vec<PathBuf>,
    events: u64,
    state: LakeState,
}

/// What a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Events in them.
    pub events: u64,
    /// What the directory holds now.
    pub state: LakeState,
}

impl LakeWriter {
    /// A run over LSNs `after + 1 ..= through` of the log `log_id`, into
    /// `out` (as [`recover`] left it, with `previous` its state). The caller
    /// holds the directory's [`lock`] from before `recover` until the
    /// commit.
    ///
    /// # Errors
    /// The directory holds another log's export, or one in another layout.
    pub fn new(
        out: &Path,
        layout: Layout,
        log_id: u128,
        previous: Option<LakeState>,
        through: u64,
    ) -> Result<LakeWriter, LakeError> {
        let log_id = format!("{log_id:032x}");
        let state = match previous {
            Some(s) if s.log_id != log_id => {
                return Err(LakeError::Damaged {
                    path: out.join(STATE_FILE),
                    what: format!(
                        "holds the export of another log ({}; this one is {log_id})",
                        s.log_id
                    ),
                })
            }
            Some(s) if s.layout != layout => {
                return Err(LakeError::Damaged {
                    path: out.join(STATE_FILE),
                    what: format!("is laid out as {:?}, not {layout:?}", s.layout),
                })
            }
            Some(s) => s,
            None => LakeState {
                log_id,
                through_lsn: 0,
                layout: layout.clone(),
                files: 0,
                events: 0,
            },
        };
        fs::create_dir_all(out).map_err(io(out))?;
        // Times and LSNs are unique and rising: delta-encoded, not looked
        // up in a dictionary; the text columns repeat, and keep theirs.
        let mut props = WriterProperties::builder();
        for c in ["time", "lsn"] {
            props = props
                .set_column_dictionary_enabled(ColumnPath::from(c), false)
                .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
        for c in NO_STATISTICS {
            props =
                props.set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
        }
        let props = props
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("auditlog {}", env!("CARGO_PKG_VERSION")))
            .build();
        let schema = Arc::new(parse_message_type(SCHEMA).expect("the schema parses"));
        Ok(LakeWriter {
            out: out.to_path_buf(),
            layout,
            columns: SchemaDescriptor::new(schema.clone()),
            schema,
            props: Arc::new(props),
            partitions: HashMap::default(),
            types: Vec::new(),
            buffered: 0,
            buffered_bytes: 0,
            type_ids: HashMap::default(),
            run: (state.through_lsn + 1, through),
            clock: 0,
            written: Vec::new(),
            events: 0,
            state,
        })
    }

    /// The first LSN this run exports (the state's end + 1).
    pub fn first_lsn(&self) -> u64 {
        self.run.0
    }

    /// Adds one event (in LSN order).
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn add(&mut self, lsn: u64, e: &EventFields<'_>) -> Result<(), LakeError> {
        let ty = match self.type_ids.get(e.event_type) {
            Some(&t) => t,
            None => {
                let (name, m) = match ocsf::lookup(e.event_type) {
                    Some((name, m)) => (static_bytes(name), m),
                    None => (ByteArray::from(e.event_type), &ocsf::UNKNOWN_TYPE),
                };
                let t = self.types.len() as u32;
                self.types.push(TypeInfo {
                    mapping: m,
                    auditlog_type: name,
                });
                self.type_ids.insert(e.event_type.to_string(), t);
                t
            }
        };
        let class_uid = self.types[ty as usize].mapping.class_uid;
        // Partitions are keyed by the day's number; its date is worked out
        // only for a new partition.
        let day = e.time.0.div_euclid(DAY_NS);
        self.clock += 1;
        let key = (class_uid, day);
        if !self.partitions.contains_key(&key) {
            self.evict_if_full()?;
            let dir = self.layout.dir(class_uid, &day_of(e.time));
            self.partitions.insert(
                key,
                Partition {
                    dir,
                    buffer: Columns::default(),
                    file: None,
                    parts: 0,
                    last_use: 0,
                },
            );
        }
        let p = self.partitions.get_mut(&key).expect("just inserted");
        p.last_use = self.clock;
        let text_before = p.buffer.arena.len();
        p.buffer.push(lsn, ty, &self.types[ty as usize], e);
        self.buffered_bytes += p.buffer.arena.len() - text_before;
        self.events += 1;
        self.buffered += 1;
        let full = p.buffer.len() >= ROW_GROUP_ROWS || p.buffer.arena.len() >= BUFFERED_BYTES;
        if full || self.buffered > BUFFERED_ROWS || self.buffered_bytes > BUFFERED_BYTES {
            // This partition's row group is full, or all buffers together
            // hold too many rows or too much text: the largest goes out as
            // a row group.
            let by_bytes = self.buffered_bytes > BUFFERED_BYTES;
            let key = if full {
                key
            } else {
                *self
                    .partitions
                    .iter()
                    .max_by_key(|(_, p)| {
                        if by_bytes {
                            p.buffer.arena.len()
                        } else {
                            p.buffer.len()
                        }
                    })
                    .expect("one partition at least")
                    .0
            };
            let ctx = Context {
                schema: &self.schema,
                columns: &self.columns,
                props: &self.props,
                run: self.run,
                types: &self.types,
            };
            let p = self.partitions.get_mut(&key).expect("present");
            self.buffered -= p.buffer.len();
            self.buffered_bytes -= p.buffer.arena.len();
            flush(&self.out, p, &ctx, &mut self.written)?;
        }
        Ok(())
    }

    fn evict_if_full(&mut self) -> Result<(), LakeError> {
        let open = self
            .partitions
            .values()
            .filter(|p| p.file.is_some() || p.buffer.len() > 0)
            .count();
        if open < OPEN_PARTITIONS {
            return Ok(());
        }
        let oldest = self
            .partitions
            .iter()
            .filter(|(_, p)| p.file.is_some() || p.buffer.len() > 0)
            .min_by_key(|(_, p)| p.last_use)
            .map(|(k, _)| *k)
            .expect("some partition is open");
        let ctx = Context {
            schema: &self.schema,
            columns: &self.columns,
            props: &self.props,
            run: self.run,
            types: &self.types,
        };
        // Kept (closed) so a later event of it starts the next part number.
        let p = self.partitions.get_mut(&oldest).expect("present");
        self.buffered -= p.buffer.len();
        self.buffered_bytes -= p.buffer.arena.len();
        flush(&self.out, p, &ctx, &mut self.written)?;
        finish(p)
    }

    /// Writes what is buffered, finishes every file and commits the run:
    /// after this returns, the directory holds the run's events and says
    /// it is through `through`.
    ///
    /// # Errors
    /// A file cannot be written, renamed or synced.
    pub fn commit(mut self) -> Result<RunSummary, LakeError> {
        let ctx = Context {
            schema: &self.schema,
            columns: &self.columns,
            props: &self.props,
            run: self.run,
            types: &self.types,
        };
        for p in self.partitions.values_mut() {
            flush(&self.out, p, &ctx, &mut self.written)?;
            finish(p)?;
        }
        let mut state = self.state.clone();
        state.through_lsn = state.through_lsn.max(self.run.1);
        state.files += self.written.len() as u64;
        state.events += self.events;
        // Every directory the run made or wrote into, and the directories
        // above them, hold their entries durably before the commit counts.
        let mut dirs: Vec<PathBuf> = Vec::new();
        for f in &self.written {
            let mut d = f.parent();
            while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
                dirs.push(self.out.join(p));
                d = p.parent();
            }
        }
        dirs.sort_unstable();
        dirs.dedup();
        // Deepest first: a directory's entry in its parent after its own.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            fsync_dir(d)?;
        }
        let commit = Commit {
            files: self.written.clone(),
            state: state.clone(),
        };
        write_atomic(&self.out.join(COMMIT_FILE), &to_json(&commit))?;
        let state = recover(&self.out)?.unwrap_or(state);
        Ok(RunSummary {
            files: self.written,
            events: self.events,
            state,
        })
    }
}

/// Sorts the partition's buffer and writes it as a row group of its open
/// file, beginning a new file when there is none, when it is full, or when
/// the rows would break its time order.
fn flush(
    out: &Path,
    p: &mut Partition,
    ctx: &Context<'_>,
    written: &mut Vec<PathBuf>,
) -> Result<(), LakeError> {
    if p.buffer.len() == 0 {
        return Ok(());
    }
    let mut rows = std::mem::take(&mut p.buffer);
    let order = rows.order();
    let first_time = rows.time[order[0]];
    if p.file
        .as_ref()
        .is_some_and(|f| f.rows + rows.len() > MAX_FILE_ROWS || first_time < f.max_time)
    {
        finish(p)?;
    }
    if p.file.is_none() {
        p.parts += 1;
        let rel = p.dir.join(format!(
            "part-{:020}-{:020}-{:04}.parquet",
            ctx.run.0, ctx.run.1, p.parts
        ));
        let dest = out.join(&rel);
        let dir = dest.parent().expect("a partition directory");
        fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = tmp_name(&dest);
        let f = File::create(&tmp).map_err(io(&tmp))?;
        let writer =
            SerializedFileWriter::new(BufWriter::new(f), ctx.schema.clone(), ctx.props.clone())
                .map_err(pq(&tmp))?;
        written.push(rel);
        p.file = Some(OpenFile {
            path: tmp,
            writer,
            rows: 0,
            max_time: i64::MIN,
            first_lsn: u64::MAX,
            last_lsn: 0,
        });
    }
    let f = p.file.as_mut().expect("opened above");
    let path = f.path.clone();
    write_row_group(&mut f.writer, &mut rows, &order, ctx).map_err(pq(&path))?;
    f.rows += rows.len();
    f.max_time = f.max_time.max(rows.time[*order.last().expect("not empty")]);
    for &l in &rows.lsn {
        f.first_lsn = f.first_lsn.min(l as u64);
        f.last_lsn = f.last_lsn.max(l as u64);
    }
    Ok(())
}

/// What every flush of a run needs.
struct Context<'a> {
    schema: &'a Arc<Type>,
    columns: &'a SchemaDescriptor,
    props: &'a Arc<WriterProperties>,
    run: (u64, u64),
    types: &'a [TypeInfo],
}

/// Which key a column's values follow from, if they follow from one.
#[derive(Clone, Copy)]
enum Key {
    /// The event's type: `auditlog_type`, `activity_id`, `activity_name`,
    /// `type_uid`, `type_name`.
    Type,
    /// The partition's class: `class_uid`, `class_name`, `category_uid`,
    /// `category_name`.
    Class,
    /// The severity: `severity_id`, `severity`, `metadata_log_level`.
    Severity,
    /// The status: `status_id`, `status`.
    Status,
}

fn key_of(col: usize) -> Option<Key> {
    match col {
        2 | 7..=10 => Some(Key::Type),
        3..=6 => Some(Key::Class),
        11 | 12 | 16 => Some(Key::Severity),
        13 | 14 => Some(Key::Status),
        _ => None,
    }
}

fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    rows: &mut Columns,
    order: &[usize],
    ctx: &Context<'_>,
) -> parquet::errors::Result<()> {
    use keyed::Value;
    let n = rows.len();
    // Every row of a partition has its class.
    let class = ctx.types[rows.types[0] as usize].mapping;
    let arena = Bytes::from(std::mem::take(&mut rows.arena));
    let ints64 = |v: &[i64]| order.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let sev = |code: u32| {
        u8::try_from(code)
            .ok()
            .and_then(Severity::from_code)
            .expect("a code Severity::code gave")
    };
    // The row group's statuses, and each row's.
    let mut statuses: Vec<(u8, &'static str)> = Vec::new();
    let status_keys: Vec<u32> = order
        .iter()
        .map(|&i| {
            let s = rows.status[i];
            match statuses.iter().position(|&t| t == s) {
                Some(k) => k as u32,
                None => {
                    statuses.push(s);
                    statuses.len() as u32 - 1
                }
            }
        })
        .collect();
    let mut rg = w.next_row_group()?;
    for col in 0..ctx.columns.num_columns() {
        if let Some(key) = key_of(col) {
            let descr = ctx.columns.column(col);
            let stats = !NO_STATISTICS.contains(&descr.name());
            let types = order.iter().map(|&i| rows.types[i]);
            let severities = order.iter().map(|&i| u32::from(rows.severity[i]));
            let info = |k: u32| &ctx.types[k as usize];
            let (bytes, close) = match (key, col) {
                (Key::Type, 2) => keyed::chunk(
                    &descr,
                    types,
                    |k| Value::Text(info(k).auditlog_type.data()),
                    stats,
                ),
                (Key::Type, 7) => keyed::chunk(
                    &descr,
                    types,
                    |k| Value::I32(info(k).mapping.activity_id as i32),
                    stats,
                ),
                (Key::Type, 8) => keyed::chunk(
                    &descr,
                    types,
                    |k| Value::Text(info(k).mapping.activity_name.as_bytes()),
                    stats,
                ),
                (Key::Type, 9) => keyed::chunk(
                    &descr,
                    types,
                    |k| Value::I64(info(k).mapping.type_uid() as i64),
                    stats,
                ),
                (Key::Type, _) => keyed::chunk(
                    &descr,
                    types,
                    |k| Value::Text(info(k).mapping.type_name.as_bytes()),
                    stats,
                ),
                (Key::Class, _) => {
                    let value = match col {
                        3 => Value::I32(class.class_uid as i32),
                        4 => Value::Text(class.class_name.as_bytes()),
                        5 => Value::I32(class.category_uid() as i32),
                        _ => Value::Text(class.category_name().as_bytes()),
                    };
                    keyed::chunk(&descr, std::iter::repeat_n(0, n), |_| value.clone(), stats)
                }
                (Key::Severity, 11) => keyed::chunk(
                    &descr,
                    severities,
                    |k| Value::I32(i32::from(ocsf::severity(sev(k)).0)),
                    stats,
                ),
                (Key::Severity, 12) => keyed::chunk(
                    &descr,
                    severities,
                    |k| Value::Text(ocsf::severity(sev(k)).1.as_bytes()),
                    stats,
                ),
                (Key::Severity, _) => keyed::chunk(
                    &descr,
                    severities,
                    |k| Value::Text(sev(k).as_str().as_bytes()),
                    stats,
                ),
                (Key::Status, 13) => keyed::chunk(
                    &descr,
                    status_keys.iter().copied(),
                    |k| Value::I32(i32::from(statuses[k as usize].0)),
                    stats,
                ),
                (Key::Status, _) => keyed::chunk(
                    &descr,
                    status_keys.iter().copied(),
                    |k| Value::Text(statuses[k as usize].1.as_bytes()),
                    stats,
                ),
            }?;
            rg.append_column(&bytes, close)?;
            continue;
        }
        let mut c = rg
            .next_column()?
            .ok_or_else(|| parquet::errors::ParquetError::General("a column short".into()))?;
        match col {
            0 => c
                .typed::<Int64Type>()
                .write_batch(&ints64(&rows.time), None, None)?,
            1 => c
                .typed::<Int64Type>()
                .write_batch(&ints64(&rows.lsn), None, None)?,
            k => {
                let spans = &rows.opt[if k == 15 { 0 } else { k - 16 }];
                let mut values = Vec::with_capacity(n);
                let mut defs = Vec::with_capacity(n);
                for &i in order {
                    match spans[i] {
                        Some((at, len)) => {
                            values.push(ByteArray::from(
                                arena.slice(at as usize..(at + len) as usize),
                            ));
                            defs.push(1);
                        }
                        None => defs.push(0),
                    }
                }
                c.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&defs), None)?
            }
        };
        c.close()?;
    }
    rg.close()?;
    Ok(())
}

/// Finishes the partition's open file: its LSN range as key-value
/// metadata, the footer, then fsync.
fn finish(p: &mut Partition) -> Result<(), LakeError> {
    let Some(mut f) = p.file.take() else {
        return Ok(());
    };
    for (k, v) in [
        ("auditlog.first_lsn", f.first_lsn.to_string()),
        ("auditlog.last_lsn", f.last_lsn.to_string()),
        ("auditlog.rows", f.rows.to_string()),
        ("ocsf.version", OCSF_VERSION.to_string()),
    ] {
        f.writer
            .append_key_value_metadata(KeyValue::new(k.to_string(), v));
    }
    let mut w = f.writer.into_inner().map_err(pq(&f.path))?;
    w.flush().map_err(io(&f.path))?;
    let file = w.into_inner().map_err(|e| io(&f.path)(e.into_error()))?;
    file.sync_all().map_err(io(&f.path))?;
    Ok(())
}

/// Numbers and IPv4 addresses written as text without `fmt`, which costs
/// more than the rest of a row's buffering.
mod itoa_buf {
    /// Room for an i64 or a dotted quad.
    #[derive(Default)]
    pub struct Buf {
        bytes: [u8; 24],
        len: usize,
    }

    impl Buf {
        fn push_u64(&mut self, mut n: u64) {
            // Written in place, last digit first: no copy (a call to memmove
            // per number cost more than the digits).
            let digits = n.checked_ilog10().map_or(1, |l| l as usize + 1);
            for i in (self.len..self.len + digits).rev() {
                self.bytes[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            self.len += digits;
        }

        fn text(&self) -> &str {
            std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII digits and dots")
        }

        /// `n` in decimal.
        pub fn int(&mut self, n: i64) -> &str {
            self.len = 0;
            if n < 0 {
                self.bytes[0] = b'-';
                self.len = 1;
            }
            self.push_u64(n.unsigned_abs());
            self.text()
        }

        /// `a.b.c.d`.
        pub fn ipv4(&mut self, ip: std::net::Ipv4Addr) -> &str {
            self.len = 0;
            for (i, o) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    self.bytes[self.len] = b'.';
                    self.len += 1;
                }
                self.push_u64(u64::from(o));
            }
            self.text()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::Buf;

        #[test]
        fn numbers_and_addresses_read_as_fmt_writes_them() {
            for n in [0, 7, -1, 10, 99, i64::MIN, i64::MAX, 1_234_567] {
                assert_eq!(Buf::default().int(n), n.to_string());
            }
            for ip in ["0.0.0.0", "10.0.6.42", "255.255.255.255", "203.0.113.66"] {
                let a: std::net::Ipv4Addr = ip.parse().unwrap();
                assert_eq!(Buf::default().ipv4(a), ip);
            }
        }
    }
}
