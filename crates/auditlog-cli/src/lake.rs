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
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::catalog::ocsf::{self, OCSF_VERSION};
use auditlog::{EventFields, Timestamp};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::Type;
use serde::{Deserialize, Serialize};

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
const TMP_SUFFIX: &str = ".tmp";

/// Rows a file takes before it is finished and the next part begun.
pub const MAX_FILE_ROWS: usize = 4 << 20;
/// Rows buffered per partition before they are sorted and written as one
/// row group.
pub const ROW_GROUP_ROWS: usize = 1 << 17;
/// Partitions with a file open at once; the least recently used is
/// finished when one more is needed (bounds memory and descriptors).
pub const OPEN_PARTITIONS: usize = 32;

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

/// Finishes or undoes a run that stopped (see the module's comment), then
/// says what the directory holds (`None` if it holds no export yet).
///
/// # Errors
/// The directory cannot be read or written, or its state file is damaged.
pub fn recover(out: &Path) -> Result<Option<LakeState>, LakeError> {
    let commit_path = out.join(COMMIT_FILE);
    if let Some(commit) = read_json::<Commit>(&commit_path)? {
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
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in entries {
        let p = e.map_err(io(dir))?.path();
        if p.is_dir() {
            remove_tmp(&p)?;
        } else if p.to_string_lossy().ends_with(".parquet.tmp") {
            fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// A day in UTC: (year, month, day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Day(i32, u8, u8);

fn day_of(t: Timestamp) -> Day {
    let days = t.0.div_euclid(86_400_000_000_000);
    match time::OffsetDateTime::from_unix_timestamp(days * 86_400) {
        Ok(d) => Day(d.year(), u8::from(d.month()), d.day()),
        Err(_) => Day(1970, 1, 1),
    }
}

/// One row's columns, borrowed from the event; strings are copied into the
/// partition's buffers.
#[derive(Default)]
struct Columns {
    time: Vec<i64>,
    lsn: Vec<i64>,
    auditlog_type: Vec<ByteArray>,
    severity_id: Vec<i32>,
    severity: Vec<ByteArray>,
    status_id: Vec<i32>,
    status: Vec<ByteArray>,
    log_level: Vec<ByteArray>,
    /// The optional columns: values present, and per row whether present.
    opt: [(Vec<ByteArray>, Vec<i16>); OPTIONAL],
    /// Per row: activity and type uid (the class is the partition's).
    activity_id: Vec<i32>,
    activity_name: Vec<ByteArray>,
    type_uid: Vec<i64>,
    type_name: Vec<ByteArray>,
}

const OPTIONAL: usize = 13;

impl Columns {
    fn len(&self) -> usize {
        self.lsn.len()
    }

    fn push(&mut self, lsn: u64, e: &EventFields<'_>) {
        let m = ocsf::mapping(e.event_type);
        let (severity_id, severity) = ocsf::severity(e.severity);
        let (status_id, status) = m.status.resolve(e.result);
        self.time.push(e.time.0);
        self.lsn.push(lsn as i64);
        self.auditlog_type.push(e.event_type.into());
        self.severity_id.push(i32::from(severity_id));
        self.severity.push(severity.into());
        self.status_id.push(i32::from(status_id));
        self.status.push(status.into());
        self.log_level.push(e.severity.as_str().into());
        self.activity_id.push(m.activity_id as i32);
        self.activity_name.push(m.activity_name.into());
        self.type_uid.push(m.type_uid() as i64);
        self.type_name.push(
            format!("{}: {}", m.class_name, m.activity_name)
                .as_str()
                .into(),
        );
        let ip = e.ip.map(|ip| ip.to_string());
        let result = e.result.map(|r| r.to_string());
        let attrs = (!e.attrs.is_empty()).then(|| {
            let m: serde_json::Map<String, serde_json::Value> = e
                .attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
                .collect();
            serde_json::Value::Object(m).to_string()
        });
        let values: [Option<&str>; OPTIONAL] = [
            result.as_deref(),
            e.source,
            e.data,
            e.actor,
            e.actor_id,
            e.actor_account,
            e.account_id,
            e.session,
            ip.as_deref(),
            e.entity_type,
            e.entity_id,
            e.entity_name,
            attrs.as_deref(),
        ];
        for ((vals, defs), v) in self.opt.iter_mut().zip(values) {
            match v {
                Some(v) => {
                    vals.push(v.into());
                    defs.push(1);
                }
                None => defs.push(0),
            }
        }
    }

    /// The rows in time order (then LSN).
    fn sorted(self) -> Columns {
        let n = self.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.time.windows(2).all(|w| w[0] <= w[1]) {
            return self;
        }
        order.sort_by_key(|&i| (self.time[i], self.lsn[i]));
        let pick_i64 = |v: &[i64]| order.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let pick_i32 = |v: &[i32]| order.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let pick_b = |v: &[ByteArray]| order.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        let mut opt: [(Vec<ByteArray>, Vec<i16>); OPTIONAL] = Default::default();
        for (k, (vals, defs)) in self.opt.iter().enumerate() {
            // Where each row's value sits among the present ones.
            let mut at = Vec::with_capacity(n);
            let mut next = 0;
            for &d in defs {
                at.push(next);
                next += usize::from(d == 1);
            }
            for &i in &order {
                opt[k].1.push(defs[i]);
                if defs[i] == 1 {
                    opt[k].0.push(vals[at[i]].clone());
                }
            }
        }
        Columns {
            time: pick_i64(&self.time),
            lsn: pick_i64(&self.lsn),
            auditlog_type: pick_b(&self.auditlog_type),
            severity_id: pick_i32(&self.severity_id),
            severity: pick_b(&self.severity),
            status_id: pick_i32(&self.status_id),
            status: pick_b(&self.status),
            log_level: pick_b(&self.log_level),
            opt,
            activity_id: pick_i32(&self.activity_id),
            activity_name: pick_b(&self.activity_name),
            type_uid: pick_i64(&self.type_uid),
            type_name: pick_b(&self.type_name),
        }
    }
}

/// One partition: its open file, if any, and the rows waiting for it.
struct Partition {
    class_uid: u32,
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
    props: Arc<WriterProperties>,
    partitions: HashMap<(u32, Day), Partition>,
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
    /// `out` (as [`recover`] left it, with `previous` its state).
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
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("a valid level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("auditlog {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(LakeWriter {
            out: out.to_path_buf(),
            layout,
            schema: Arc::new(parse_message_type(SCHEMA).expect("the schema parses")),
            props: Arc::new(props),
            partitions: HashMap::new(),
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
        let m = ocsf::mapping(e.event_type);
        let day = day_of(e.time);
        self.clock += 1;
        let key = (m.class_uid, day);
        if !self.partitions.contains_key(&key) {
            self.evict_if_full()?;
            let dir = self.layout.dir(m.class_uid, &day);
            self.partitions.insert(
                key,
                Partition {
                    class_uid: m.class_uid,
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
        p.buffer.push(lsn, e);
        self.events += 1;
        if p.buffer.len() >= ROW_GROUP_ROWS {
            let run = self.run;
            flush(
                &self.out,
                p,
                &self.schema,
                &self.props,
                run,
                &mut self.written,
            )?;
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
        let mut p = self.partitions.remove(&oldest).expect("present");
        let run = self.run;
        flush(
            &self.out,
            &mut p,
            &self.schema,
            &self.props,
            run,
            &mut self.written,
        )?;
        finish(&mut p)?;
        // Kept (closed) so a later event of it starts the next part number.
        self.partitions.insert(oldest, p);
        Ok(())
    }

    /// Writes what is buffered, finishes every file and commits the run:
    /// after this returns, the directory holds the run's events and says
    /// it is through `through`.
    ///
    /// # Errors
    /// A file cannot be written, renamed or synced.
    pub fn commit(mut self) -> Result<RunSummary, LakeError> {
        let run = self.run;
        for p in self.partitions.values_mut() {
            flush(
                &self.out,
                p,
                &self.schema,
                &self.props,
                run,
                &mut self.written,
            )?;
            finish(p)?;
        }
        let mut state = self.state.clone();
        state.through_lsn = state.through_lsn.max(self.run.1);
        state.files += self.written.len() as u64;
        state.events += self.events;
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
    schema: &Arc<Type>,
    props: &Arc<WriterProperties>,
    run: (u64, u64),
    written: &mut Vec<PathBuf>,
) -> Result<(), LakeError> {
    if p.buffer.len() == 0 {
        return Ok(());
    }
    let rows = std::mem::take(&mut p.buffer).sorted();
    let first_time = rows.time[0];
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
            run.0, run.1, p.parts
        ));
        let dest = out.join(&rel);
        let dir = dest.parent().expect("a partition directory");
        fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = tmp_name(&dest);
        let f = File::create(&tmp).map_err(io(&tmp))?;
        let writer = SerializedFileWriter::new(BufWriter::new(f), schema.clone(), props.clone())
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
    let class = ocsf::mappings()
        .map(|(_, m)| m)
        .find(|m| m.class_uid == p.class_uid)
        .copied()
        .unwrap_or(ocsf::UNKNOWN_TYPE);
    let f = p.file.as_mut().expect("opened above");
    let path = f.path.clone();
    write_row_group(&mut f.writer, &rows, &class).map_err(pq(&path))?;
    f.rows += rows.len();
    f.max_time = f.max_time.max(*rows.time.last().expect("not empty"));
    for &l in &rows.lsn {
        f.first_lsn = f.first_lsn.min(l as u64);
        f.last_lsn = f.last_lsn.max(l as u64);
    }
    Ok(())
}

fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    rows: &Columns,
    class: &ocsf::OcsfMapping,
) -> parquet::errors::Result<()> {
    let n = rows.len();
    let class_uid = vec![class.class_uid as i32; n];
    let class_name = vec![ByteArray::from(class.class_name); n];
    let category_uid = vec![class.category_uid() as i32; n];
    let category_name = vec![ByteArray::from(class.category_name()); n];
    let mut rg = w.next_row_group()?;
    let mut col = 0;
    while let Some(mut c) = rg.next_column()? {
        macro_rules! req {
            ($t:ty, $v:expr) => {{
                c.typed::<$t>().write_batch($v, None, None)?;
            }};
        }
        match col {
            0 => req!(Int64Type, &rows.time),
            1 => req!(Int64Type, &rows.lsn),
            2 => req!(ByteArrayType, &rows.auditlog_type),
            3 => req!(Int32Type, &class_uid),
            4 => req!(ByteArrayType, &class_name),
            5 => req!(Int32Type, &category_uid),
            6 => req!(ByteArrayType, &category_name),
            7 => req!(Int32Type, &rows.activity_id),
            8 => req!(ByteArrayType, &rows.activity_name),
            9 => req!(Int64Type, &rows.type_uid),
            10 => req!(ByteArrayType, &rows.type_name),
            11 => req!(Int32Type, &rows.severity_id),
            12 => req!(ByteArrayType, &rows.severity),
            13 => req!(Int32Type, &rows.status_id),
            14 => req!(ByteArrayType, &rows.status),
            15 => {
                let (v, d) = &rows.opt[0];
                c.typed::<ByteArrayType>().write_batch(v, Some(d), None)?;
            }
            16 => req!(ByteArrayType, &rows.log_level),
            k => {
                let (v, d) = &rows.opt[k - 16];
                c.typed::<ByteArrayType>().write_batch(v, Some(d), None)?;
            }
        }
        c.close()?;
        col += 1;
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
