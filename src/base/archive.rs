//! Unpacking archives that came from elsewhere (cell artifacts from GitHub, traces from the web)
//! without trusting them: an entry that would land outside the destination (`../`, an absolute
//! path), a link of any kind, a device or pipe, and an archive that expands beyond a cap are all
//! refused, whatever the archive's headers claim.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Extracts a zip into `dest`, with the refusals above.
pub(crate) fn extract_zip(zip_path: &Path, dest: &Path, cap: u64) -> Result<()> {
    let file =
        File::open(zip_path).with_context(|| format!("cannot open {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    let mut budget = Budget::new(zip_path, cap);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let raw = entry.name().unwrap_or_default().into_owned();
        let absolute = raw.starts_with('/') || raw.starts_with('\\') || raw.get(1..2) == Some(":");
        let Some(rel) = entry.enclosed_name().filter(|_| !absolute) else {
            bail!(
                "{}: entry `{raw}` would be written outside the extraction folder",
                zip_path.display()
            );
        };
        if entry.is_symlink() {
            bail!(
                "{}: entry `{raw}` is a symbolic link; only files and folders are unpacked",
                zip_path.display()
            );
        }
        let out_path = dest.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&out_path)
                .with_context(|| format!("cannot create {}", out_path.display()))?;
        } else {
            budget.write(&mut entry, &out_path)?;
        }
    }
    Ok(())
}

/// Extracts a gzip-compressed tar archive into `dest`, with the refusals above. The pax headers
/// that `git archive` (and so GitHub) writes are read as metadata, not unpacked.
pub(crate) fn extract_tar_gz(tar_path: &Path, dest: &Path, cap: u64) -> Result<()> {
    let file =
        File::open(tar_path).with_context(|| format!("cannot open {}", tar_path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let unreadable = || format!("{} is not a readable tar.gz archive", tar_path.display());
    let mut budget = Budget::new(tar_path, cap);
    for entry in archive.entries().with_context(unreadable)? {
        let mut entry = entry.with_context(unreadable)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let rel = enclosed(&raw).with_context(|| {
            format!(
                "{}: entry `{raw}` would be written outside the extraction folder",
                tar_path.display()
            )
        })?;
        match kind {
            tar::EntryType::Directory => {
                let out_path = dest.join(&rel);
                std::fs::create_dir_all(&out_path)
                    .with_context(|| format!("cannot create {}", out_path.display()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous if !rel.as_os_str().is_empty() => {
                budget.write(&mut entry, &dest.join(&rel))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => bail!(
                "{}: entry `{raw}` is a link; only files and folders are unpacked",
                tar_path.display()
            ),
            _ => bail!(
                "{}: entry `{raw}` is not a file or a folder ({kind:?})",
                tar_path.display()
            ),
        }
    }
    Ok(())
}

/// `name` as a path relative to the extraction folder, or `None` when it would leave it: an
/// absolute path, a Windows drive or a `..`. `./` and `.` parts are dropped (tar writes `./x`).
fn enclosed(name: &str) -> Option<PathBuf> {
    if name.starts_with('\\') || name.get(1..2) == Some(":") {
        return None;
    }
    let mut rel = PathBuf::new();
    for part in Path::new(name).components() {
        match part {
            Component::Normal(p) => rel.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

/// The bytes an archive may still expand to, counted over what is actually written.
struct Budget<'a> {
    archive: &'a Path,
    cap: u64,
    used: u64,
}

impl<'a> Budget<'a> {
    fn new(archive: &'a Path, cap: u64) -> Self {
        Self {
            archive,
            cap,
            used: 0,
        }
    }

    /// Writes one entry to `out_path`, failing once the archive has expanded beyond the cap.
    fn write(&mut self, entry: &mut impl Read, out_path: &Path) -> Result<()> {
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut out = File::create(out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        let room = self.cap - self.used;
        let copied = std::io::copy(&mut entry.take(room + 1), &mut out)
            .with_context(|| format!("cannot unpack {}", out_path.display()))?;
        self.used += copied;
        if self.used > self.cap {
            bail!(
                "{} expands to more than {} bytes",
                self.archive.display(),
                self.cap
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// An archive entry: name, bytes, unix mode (0o120000 bits: a symbolic link to `bytes`).
    type Entry<'a> = (&'a str, &'a [u8], u32);

    fn is_link(mode: u32) -> bool {
        mode & 0o170000 == 0o120000
    }

    fn zip_of(dir: &Path, entries: &[Entry]) -> PathBuf {
        let path = dir.join("a.zip");
        let mut zip = zip::ZipWriter::new(File::create(&path).expect("create"));
        for (name, bytes, mode) in entries {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            if is_link(*mode) {
                zip.add_symlink(*name, std::str::from_utf8(bytes).expect("utf-8"), options)
                    .expect("symlink");
            } else {
                zip.start_file(*name, options).expect("entry");
                zip.write_all(bytes).expect("write");
            }
        }
        zip.finish().expect("finish");
        path
    }

    /// A tar.gz of `entries`, names written raw (the tar crate's builder refuses `..`).
    fn tar_gz_of(dir: &Path, entries: &[Entry]) -> PathBuf {
        let path = dir.join("a.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).expect("create"),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, bytes, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_mode(*mode);
            if is_link(*mode) {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
                header.set_cksum();
                tar.append(&header, std::io::empty()).expect("link");
            } else {
                header.set_size(bytes.len() as u64);
                header.set_cksum();
                tar.append(&header, *bytes).expect("entry");
            }
        }
        tar.into_inner().expect("tar").finish().expect("gzip");
        path
    }

    /// Makes an archive of entries in a folder.
    type Make = fn(&Path, &[Entry]) -> PathBuf;
    /// Extracts an archive into a folder, up to a cap.
    type Extract = fn(&Path, &Path, u64) -> Result<()>;

    #[test]
    fn extraction_refuses_escapes_links_and_bombs() {
        let formats: [(&str, Make, Extract); 2] = [
            ("zip", zip_of, extract_zip),
            ("tar.gz", tar_gz_of, extract_tar_gz),
        ];
        for (format, make, extract) in formats {
            let dir = tempfile::tempdir().expect("tempdir");
            let dest = dir.path().join("out");
            let cases: [(&str, &[Entry], &str); 4] = [
                ("parent", &[("../escaped.txt", b"x", 0o644)], "outside"),
                (
                    "absolute",
                    &[("/tmp/kvsweep-abs.txt", b"x", 0o644)],
                    "outside",
                ),
                ("symlink", &[("link", b"/etc/passwd", 0o120777)], "link"),
                (
                    "oversized",
                    &[("big.bin", &[0u8; 4096], 0o644)],
                    "more than",
                ),
            ];
            for (what, entries, says) in cases {
                let archive = make(dir.path(), entries);
                let err = extract(&archive, &dest, 1024).expect_err(what);
                assert!(
                    format!("{err:#}").contains(says),
                    "{format} {what}: {err:#}"
                );
            }
            assert!(!dir.path().join("escaped.txt").exists(), "{format}");
            assert!(!Path::new("/tmp/kvsweep-abs.txt").exists(), "{format}");
            assert!(!dest.join("link").exists(), "{format}");
            // A good archive comes out whole, a folder included.
            let archive = make(
                dir.path(),
                &[("a.csv", b"1,2\n", 0o644), ("tester/b.csv", b"3\n", 0o644)],
            );
            extract(&archive, &dest, 1024).expect("a good archive");
            assert_eq!(
                std::fs::read(dest.join("tester/b.csv")).expect("b"),
                b"3\n",
                "{format}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_a_tar_gz_is_refused_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.tar.gz");
        std::fs::write(&path, b"{\"not\": \"an archive\"}").expect("write");
        let err = extract_tar_gz(&path, &dir.path().join("out"), 1024).expect_err("not gzip");
        assert!(
            format!("{err:#}").contains("not a readable tar.gz archive"),
            "{err:#}"
        );
    }
}
