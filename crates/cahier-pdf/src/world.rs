//! The typst "world" of one rendering: one generated main source, the image and attachment
//! bytes under virtual paths, and the fonts compiled into the binary. Nothing is read from disk,
//! the network or the system's fonts.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

/// The fonts shipped with typst (Libertinus Serif, New Computer Modern, DejaVu Sans Mono…),
/// parsed once per process.
pub(crate) struct Fonts {
    pub(crate) book: LazyHash<FontBook>,
    pub(crate) fonts: Vec<Font>,
}

impl Fonts {
    /// Whether some font has a glyph for `c`. PDF/A refuses text drawn with a missing glyph, so
    /// such characters are replaced before layout.
    pub(crate) fn covers(&self, c: char) -> bool {
        self.fonts
            .iter()
            .any(|f| f.info().coverage.contains(u32::from(c)))
    }
}

static FONTS: LazyLock<Fonts> = LazyLock::new(|| {
    let fonts: Vec<Font> = typst_assets::fonts()
        .flat_map(|data| Font::iter(Bytes::new(data)))
        .collect();
    Fonts {
        book: LazyHash::new(FontBook::from_fonts(&fonts)),
        fonts,
    }
});

static LIBRARY: LazyLock<LazyHash<Library>> = LazyLock::new(|| LazyHash::new(Library::default()));

/// The shared fonts.
pub(crate) fn fonts() -> &'static Fonts {
    &FONTS
}

/// The file id of a virtual path such as `/main.typ`, or `None` for a path typst would refuse
/// (the generated source only uses ids made here, so that never happens for names we make).
pub(crate) fn file_id(path: &str) -> Option<FileId> {
    VirtualPath::new(path)
        .ok()
        .map(|vpath| RootedPath::new(VirtualRoot::Project, vpath).intern())
}

/// One rendering's world.
pub(crate) struct PdfWorld {
    main: FileId,
    source: Source,
    files: HashMap<FileId, Bytes>,
    fonts: &'static Fonts,
}

impl PdfWorld {
    /// A world whose main file is `source` and whose other files are `files` (virtual path →
    /// bytes).
    pub(crate) fn new(source: String, files: BTreeMap<String, Bytes>) -> Option<Self> {
        let main = file_id("/main.typ")?;
        Some(Self {
            main,
            source: Source::new(main, source),
            files: files
                .into_iter()
                .filter_map(|(path, bytes)| Some((file_id(&path)?, bytes)))
                .collect(),
            fonts: fonts(),
        })
    }
}

impl World for PdfWorld {
    fn library(&self) -> &LazyHash<Library> {
        &LIBRARY
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.fonts.book
    }

    fn main(&self) -> FileId {
        self.main
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main {
            Ok(self.source.clone())
        } else {
            Err(FileError::NotSource)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.main {
            return Ok(Bytes::from_string(self.source.clone()));
        }
        self.files.get(&id).cloned().ok_or(FileError::AccessDenied)
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        // The document's date comes from the caller's clock; typst's `datetime.today()` is not
        // used by the generated source.
        None
    }
}
