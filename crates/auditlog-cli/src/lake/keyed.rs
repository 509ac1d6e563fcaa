//! The columns whose values follow from a small per-row key (the event's
//! type, its severity, its status, or the partition's class), encoded by
//! us: their dictionary is the row group's distinct keys, known before a
//! row is written, so each row costs an index lookup, where the parquet
//! crate's column writer hashes and compares every value it is given. A
//! chunk is one PLAIN dictionary page and one data page of run-length /
//! bit-packed indices, uncompressed, spliced into the row group with
//! `append_column`; its statistics, when asked for, are the min and max of
//! the dictionary (every entry is used).

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::Result;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescriptor;

/// One value of a keyed column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Value<'a> {
    /// An `int32` column's.
    I32(i32),
    /// An `int64` column's.
    I64(i64),
    /// A `binary` (UTF-8) column's.
    Text(&'a [u8]),
}

impl Value<'_> {
    fn plain(&self, out: &mut Vec<u8>) {
        match self {
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Text(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// A column chunk of `keys.len()` rows, row `i` holding `value(keys[i])`:
/// its bytes and what `append_column` needs to know of them. Keys are
/// small: they index a table as long as the largest.
pub(super) fn chunk<'v>(
    descr: &Arc<ColumnDescriptor>,
    keys: impl ExactSizeIterator<Item = u32>,
    value: impl Fn(u32) -> Value<'v>,
    statistics: bool,
) -> Result<(Bytes, ColumnCloseResult)> {
    let n = keys.len();
    // The dictionary (distinct values in order of first use) and the entry
    // of each key's value.
    let mut dict: Vec<Value<'v>> = Vec::new();
    let mut slot: Vec<u32> = Vec::new();
    let mut indices: Vec<u32> = Vec::with_capacity(n);
    for k in keys {
        let k = k as usize;
        if k >= slot.len() {
            slot.resize(k + 1, u32::MAX);
        }
        if slot[k] == u32::MAX {
            let v = value(k as u32);
            slot[k] = match dict.iter().position(|d| *d == v) {
                Some(at) => at as u32,
                None => {
                    dict.push(v);
                    dict.len() as u32 - 1
                }
            };
        }
        indices.push(slot[k]);
    }
    let mut dict_page = Vec::new();
    for v in &dict {
        v.plain(&mut dict_page);
    }
    let width = bit_width(dict.len());
    let mut data = vec![width];
    hybrid(&indices, width, &mut data);

    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let (dict_len, data_len) = (dict_page.len(), data.len());
    let dict_at = pages.write_page(CompressedPage::new(
        Page::DictionaryPage {
            buf: Bytes::from(dict_page),
            num_values: dict.len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        },
        dict_len,
    ))?;
    let data_at = pages.write_page(CompressedPage::new(
        Page::DataPage {
            buf: Bytes::from(data),
            num_values: n as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        },
        data_len,
    ))?;
    pages.close()?;
    let bytes = Bytes::from(sink.into_inner()?);
    let mut meta = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(Compression::UNCOMPRESSED)
        .set_encodings_mask(EncodingMask::new_from_encodings(
            [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY].iter(),
        ))
        .set_total_compressed_size(bytes.len() as i64)
        .set_total_uncompressed_size(bytes.len() as i64)
        .set_num_values(n as i64)
        .set_dictionary_page_offset(Some(dict_at.offset as i64))
        .set_data_page_offset(data_at.offset as i64);
    if let (true, Some(min), Some(max)) = (statistics, dict.iter().min(), dict.iter().max()) {
        meta = meta.set_statistics(min_max(descr, min, max));
    }
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: n as u64,
        metadata: meta.build()?,
        bloom_filter: None,
        column_index: None,
        offset_index: None,
    };
    Ok((bytes, close))
}

/// Chunk statistics of a column without nulls whose values lie in `min..=max`.
fn min_max(descr: &ColumnDescriptor, min: &Value<'_>, max: &Value<'_>) -> Statistics {
    let signed = descr.sort_order().is_signed();
    match (min, max) {
        (Value::I32(a), Value::I32(b)) => {
            ValueStatistics::new(Some(*a), Some(*b), None, Some(0), false)
                .with_backwards_compatible_min_max(signed)
                .into()
        }
        (Value::I64(a), Value::I64(b)) => {
            ValueStatistics::new(Some(*a), Some(*b), None, Some(0), false)
                .with_backwards_compatible_min_max(signed)
                .into()
        }
        (a, b) => {
            let text = |v: &Value<'_>| match v {
                Value::Text(t) => ByteArray::from(t.to_vec()),
                Value::I32(_) | Value::I64(_) => ByteArray::new(),
            };
            ValueStatistics::new(Some(text(a)), Some(text(b)), None, Some(0), false)
                .with_backwards_compatible_min_max(signed)
                .into()
        }
    }
}

/// Bits an index into a dictionary of `entries` needs (at least 1).
fn bit_width(entries: usize) -> u8 {
    let max = entries.saturating_sub(1) as u32;
    (32 - max.leading_zeros()).max(1) as u8
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `values` in Parquet's run-length / bit-packing hybrid at `width` bits:
/// runs of 8 or more equal values as one run, the rest bit-packed in
/// groups of 8 (the last group padded with zeros).
fn hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let run_at = |i: usize| {
        let v = values[i];
        values[i..].iter().take_while(|&&x| x == v).count()
    };
    let value_bytes = usize::from(width).div_ceil(8);
    let mut i = 0;
    while i < values.len() {
        let run = run_at(i);
        if run >= 8 {
            varint(out, (run as u64) << 1);
            out.extend_from_slice(&values[i].to_le_bytes()[..value_bytes]);
            i += run;
            continue;
        }
        // Groups of 8 until a run of 8 begins at a group's start, or the end.
        let start = i;
        i += 8;
        while i < values.len() && run_at(i) < 8 {
            i += 8;
        }
        let groups = (i - start) / 8;
        varint(out, ((groups as u64) << 1) | 1);
        let (mut acc, mut bits) = (0u64, 0u32);
        for k in start..start + groups * 8 {
            acc |= u64::from(values.get(k).copied().unwrap_or(0)) << bits;
            bits += u32::from(width);
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        // 8 values of `width` bits are whole bytes: nothing is left over.
        debug_assert_eq!(bits, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::record::Field;
    use parquet::schema::parser::parse_message_type;
    use parquet::schema::types::SchemaDescriptor;

    /// A file of one row group holding `keys` in each of an int32, an
    /// int64 and a text column written by [`chunk`], read back whole with
    /// the parquet crate's reader.
    fn round_trip(keys: &[u32], entries: u32) {
        let schema = Arc::new(
            parse_message_type(
                "message t { required int32 a; required int64 b; required binary c (UTF8); }",
            )
            .unwrap(),
        );
        let columns = SchemaDescriptor::new(schema.clone());
        let text: Vec<String> = (0..entries)
            .map(|k| format!("value {}", k % 1000))
            .collect();
        let mut w = SerializedFileWriter::new(Vec::new(), schema, Default::default()).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let keys_of = || keys.iter().copied();
        let parts = [
            chunk(
                &columns.column(0),
                keys_of(),
                |k| Value::I32(k as i32 - 5),
                true,
            ),
            chunk(
                &columns.column(1),
                keys_of(),
                |k| Value::I64(i64::from(k) << 40),
                true,
            ),
            chunk(
                &columns.column(2),
                keys_of(),
                |k| Value::Text(text[k as usize].as_bytes()),
                false,
            ),
        ];
        for part in parts {
            let (bytes, close) = part.unwrap();
            rg.append_column(&bytes, close).unwrap();
        }
        rg.close().unwrap();
        let file = Bytes::from(w.into_inner().unwrap());
        let r = SerializedFileReader::new(file).unwrap();
        let rows: Vec<(i32, i64, String)> = r
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                let row = row.unwrap();
                let f: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
                match (f[0], f[1], f[2]) {
                    (Field::Int(a), Field::Long(b), Field::Str(c)) => (*a, *b, c.clone()),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        let want: Vec<(i32, i64, String)> = keys
            .iter()
            .map(|&k| (k as i32 - 5, i64::from(k) << 40, text[k as usize].clone()))
            .collect();
        assert_eq!(rows, want, "{} keys of {entries}", keys.len());
        // Statistics: min and max of the int columns, none on the text.
        let meta = r.metadata().row_group(0);
        let (lo, hi) = (keys.iter().min().unwrap(), keys.iter().max().unwrap());
        match meta.column(0).statistics() {
            Some(Statistics::Int32(s)) => {
                assert_eq!(
                    (s.min_opt(), s.max_opt()),
                    (Some(&(*lo as i32 - 5)), Some(&(*hi as i32 - 5)))
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(meta.column(2).statistics().is_none());
    }

    #[test]
    fn chunks_read_back_with_the_parquet_crate() {
        let mut rng = 12345u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for len in [1usize, 7, 8, 9, 15, 16, 17, 100, 1000, 4099] {
            for entries in [1u32, 2, 3, 5, 17, 300, 3000] {
                // Runs of 1 to 20 of one key: some runs, some noise.
                let mut keys = Vec::new();
                while keys.len() < len {
                    let k = (next() % u64::from(entries)) as u32;
                    let run = 1 + (next() % 20) as usize;
                    keys.extend(std::iter::repeat_n(k, run.min(len - keys.len())));
                }
                round_trip(&keys, entries);
            }
        }
    }

    #[test]
    fn bit_widths_fit_the_largest_index() {
        assert_eq!(bit_width(0), 1);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 1);
        assert_eq!(bit_width(3), 2);
        assert_eq!(bit_width(256), 8);
        assert_eq!(bit_width(257), 9);
    }
}
