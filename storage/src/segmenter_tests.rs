use std::io::Cursor;

use super::*;

/// A reader that hands out at most `chunk` bytes per call, like a pipe or socket.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn segments_cover_the_file_and_hash_it() {
    for (len, seg) in [(1000usize, 300usize), (900, 300), (1, 300), (299, 300)] {
        let file = data(len);
        let mut reader = SegmentReader::new(
            Trickle {
                data: &file,
                chunk: 7,
            },
            seg,
        );
        let mut joined = Vec::new();
        let mut indices = Vec::new();
        for item in reader.by_ref() {
            let (index, bytes) = item.unwrap();
            assert!(bytes.len() <= seg);
            indices.push(index);
            joined.extend_from_slice(&bytes);
        }
        assert_eq!(joined, file);
        let expected_count = SegmentReader::<&[u8]>::segment_count(len as u64, seg);
        assert_eq!(indices, (0..expected_count).collect::<Vec<_>>());
        assert_eq!(reader.file_blake3(), Some(*blake3::hash(&file).as_bytes()));
        assert_eq!(reader.bytes_read(), len as u64);
    }
}

#[test]
fn empty_source_gives_no_segment_but_a_hash() {
    let mut reader = SegmentReader::new(Cursor::new(Vec::new()), 100);
    assert!(reader.file_blake3().is_none());
    assert!(reader.next().is_none());
    assert_eq!(reader.file_blake3(), Some(*blake3::hash(b"").as_bytes()));
}

#[test]
fn read_errors_are_reported_and_leave_no_hash() {
    let mut reader = SegmentReader::new(Failing, 100);
    assert!(reader.next().unwrap().is_err());
    assert!(reader.next().is_none());
    assert_eq!(reader.file_blake3(), None);
}

#[test]
fn assembler_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    let file = data(1000);
    let mut asm = FileAssembler::create(&dest, 1000, *blake3::hash(&file).as_bytes()).unwrap();
    assert!(asm.temp_path().starts_with(dir.path()));
    for (i, chunk) in file.chunks(300).enumerate() {
        asm.write_segment(i as u64, chunk).unwrap();
        assert!(!dest.exists(), "destination appears only when complete");
    }
    assert_eq!(asm.finish().unwrap(), dest);
    assert_eq!(fs::read(&dest).unwrap(), file);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn assembler_refuses_bad_content_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    let file = data(600);
    let hash = *blake3::hash(&file).as_bytes();

    let mut asm = FileAssembler::create(&dest, 600, hash).unwrap();
    let mut wrong = file.clone();
    wrong[10] ^= 1;
    asm.write_segment(0, &wrong).unwrap();
    let err = asm.finish().unwrap_err();
    assert!(matches!(err, AssembleError::HashMismatch { .. }), "{err}");

    let mut asm = FileAssembler::create(&dest, 600, hash).unwrap();
    assert!(matches!(
        asm.write_segment(1, &file[..300]),
        Err(AssembleError::OutOfOrder {
            expected: 0,
            got: 1
        })
    ));
    asm.write_segment(0, &file[..300]).unwrap();
    assert!(matches!(
        asm.write_segment(1, &data(301)),
        Err(AssembleError::SizeMismatch {
            expected: 600,
            got: 601
        })
    ));
    drop(asm);

    let asm = FileAssembler::create(&dest, 600, hash).unwrap();
    assert!(matches!(
        asm.finish(),
        Err(AssembleError::SizeMismatch {
            expected: 600,
            got: 0
        })
    ));
    assert!(!dest.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp files removed"
    );
}
