//! The `@graph` of `ro-crate-metadata.json` kept compact: the JSON text stays in a file (or a
//! byte buffer) and memory holds only an index from each node's `@id` to its byte range. A
//! node is parsed when it is asked for, so an import reads one Dataset (and the File,
//! Comment, Person … nodes it names) at a time, whatever the number of entries.
//!
//! Indexing scans the file once: a small structural scanner finds the top-level object's
//! values and the `@graph` array's elements (strings, escapes and nesting only); serde_json
//! then checks every piece it found (each graph node, each other top-level value), so a file
//! that is not valid JSON is still refused as a whole, before anything is imported. Lenient as
//! the model is: `@graph` may be in any order, nodes without `@id` and non-object elements are
//! ignored, and a repeated `@id` keeps its last node (as a JSON object would).
//!
//! This module never interprets a node; [`crate::model`] does.

use crate::scratch::ReadSeek;
use crate::{ElnError, Result, refused};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::Mutex;

/// Where a node's JSON text lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: u64,
    is_dataset: bool,
}

/// Where the JSON text is read from when a node is asked for.
enum Source {
    /// A temporary copy of the metadata (an import).
    File(Mutex<Box<dyn ReadSeek>>),
    /// The metadata in memory (small crates, tests).
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(_) => f.write_str("Source::File"),
            Self::Bytes(bytes) => write!(f, "Source::Bytes({} bytes)", bytes.len()),
        }
    }
}

/// The index of a graph: `@id` → byte range, and the text it points into.
#[derive(Debug)]
pub struct Graph {
    source: Source,
    index: HashMap<Box<str>, Span>,
    /// The first failure to read a node back (an IO error on the temporary file): lookups
    /// then answer `None`, and [`Graph::take_failure`] lets the caller refuse the import.
    failure: Mutex<Option<String>>,
}

/// The two keys the index reads of each node; the rest of it is skipped unparsed.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(rename = "@id", default)]
    id: Option<Value>,
    #[serde(rename = "@type", default)]
    kind: Option<Value>,
}

fn is_dataset_type(kind: Option<&Value>) -> bool {
    match kind {
        Some(Value::String(s)) => s == "Dataset",
        Some(Value::Array(list)) => list.iter().any(|t| t.as_str() == Some("Dataset")),
        _ => false,
    }
}

fn not_json(detail: impl std::fmt::Display) -> ElnError {
    refused(format!(
        "ro-crate-metadata.json is not valid JSON: {detail}"
    ))
}

fn no_graph() -> ElnError {
    refused("ro-crate-metadata.json has no @graph: not a flattened RO-Crate")
}

/// A byte reader that counts its position and can record what it reads.
struct Scanner<R: BufRead> {
    reader: R,
    position: u64,
    capture: Option<Vec<u8>>,
}

impl<R: BufRead> Scanner<R> {
    fn peek(&mut self) -> Result<Option<u8>> {
        Ok(self.reader.fill_buf()?.first().copied())
    }

    fn next(&mut self) -> Result<Option<u8>> {
        let byte = self.peek()?;
        if let Some(b) = byte {
            self.reader.consume(1);
            self.position += 1;
            if let Some(capture) = &mut self.capture {
                capture.push(b);
            }
        }
        Ok(byte)
    }

    fn expect_next(&mut self) -> Result<u8> {
        self.next()?
            .ok_or_else(|| not_json("the file ends in the middle of a value"))
    }

    fn skip_whitespace(&mut self) -> Result<()> {
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.next()?;
        }
        Ok(())
    }

    /// Skips the rest of a string whose opening quote was read.
    fn skip_string(&mut self) -> Result<()> {
        loop {
            match self.expect_next()? {
                b'"' => return Ok(()),
                b'\\' => {
                    self.expect_next()?;
                }
                _ => {}
            }
        }
    }

    /// Skips one value (structure only: serde_json checks the captured text afterwards).
    fn skip_value(&mut self) -> Result<()> {
        match self.peek()? {
            None => Err(not_json("the file ends where a value is expected")),
            Some(b'"') => {
                self.next()?;
                self.skip_string()
            }
            Some(b'{' | b'[') => {
                self.next()?;
                let mut depth: u64 = 1;
                while depth > 0 {
                    match self.expect_next()? {
                        b'"' => self.skip_string()?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                }
                Ok(())
            }
            Some(_) => {
                let mut n = 0;
                while let Some(b) = self.peek()? {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.next()?;
                    n += 1;
                }
                if n == 0 {
                    return Err(not_json("a value is missing"));
                }
                Ok(())
            }
        }
    }

    /// Skips one value and returns its text.
    fn capture_value(&mut self) -> Result<Vec<u8>> {
        self.capture = Some(Vec::new());
        let skipped = self.skip_value();
        let captured = self.capture.take().unwrap_or_default();
        skipped.map(|()| captured)
    }
}

impl Graph {
    /// Indexes the metadata held in `file` (read from its start); the file is kept and read
    /// again, one node at a time, by [`Graph::node`].
    pub fn from_file(file: std::fs::File) -> Result<Self> {
        Self::from_reader(Box::new(file))
    }

    /// Indexes the metadata `reader` holds (from its start), such as a scratch file
    /// ([`crate::scratch`]); it is kept and read again, one node at a time.
    pub fn from_reader(mut reader: Box<dyn ReadSeek>) -> Result<Self> {
        reader.seek(SeekFrom::Start(0))?;
        let index = build_index(BufReader::with_capacity(64 * 1024, &mut reader))?;
        Ok(Self {
            source: Source::File(Mutex::new(reader)),
            index,
            failure: Mutex::new(None),
        })
    }

    /// Indexes metadata held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let index = build_index(bytes.as_slice())?;
        Ok(Self {
            source: Source::Bytes(bytes),
            index,
            failure: Mutex::new(None),
        })
    }

    /// How many nodes have an `@id`.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no node has an `@id`.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether a node has this `@id`.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Whether the node with this `@id` has `@type` `Dataset` (known without parsing it).
    pub fn is_dataset(&self, id: &str) -> bool {
        self.index.get(id).is_some_and(|span| span.is_dataset)
    }

    /// The node with this `@id`, parsed now; `None` when there is none (or it cannot be read
    /// back, see [`Graph::take_failure`]).
    pub fn node(&self, id: &str) -> Option<Value> {
        let span = *self.index.get(id)?;
        match self.read(span) {
            Ok(value) => Some(value),
            Err(error) => {
                if let Ok(mut failure) = self.failure.lock() {
                    failure.get_or_insert_with(|| error.to_string());
                }
                None
            }
        }
    }

    /// The first failure to read a node back, if any (then some lookups answered `None`).
    pub fn take_failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    fn read(&self, span: Span) -> Result<Value> {
        let parse =
            |bytes: &[u8]| serde_json::from_slice(bytes).map_err(|e| not_json(e.to_string()));
        match &self.source {
            Source::Bytes(bytes) => {
                let start = usize::try_from(span.offset).map_err(|_| not_json("offset"))?;
                let end = start
                    .checked_add(usize::try_from(span.len).map_err(|_| not_json("length"))?)
                    .ok_or_else(|| not_json("length"))?;
                parse(bytes.get(start..end).ok_or_else(|| not_json("range"))?)
            }
            Source::File(file) => {
                let mut file = file
                    .lock()
                    .map_err(|_| refused("reading the archive's metadata was interrupted"))?;
                file.seek(SeekFrom::Start(span.offset))?;
                let mut bytes = Vec::new();
                (&mut *file).take(span.len).read_to_end(&mut bytes)?;
                parse(&bytes)
            }
        }
    }
}

/// Scans the metadata once and indexes its `@graph` (see the module doc).
fn build_index(reader: impl BufRead) -> Result<HashMap<Box<str>, Span>> {
    let mut scanner = Scanner {
        reader,
        position: 0,
        capture: None,
    };
    let mut index = HashMap::new();
    scanner.skip_whitespace()?;
    if scanner.peek()? != Some(b'{') {
        // Not an object: valid JSON without a graph, or not JSON at all.
        let text = scanner.capture_value()?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&text).map_err(not_json)?;
        return Err(no_graph());
    }
    scanner.next()?;
    let mut has_graph = false;
    let mut first = true;
    loop {
        scanner.skip_whitespace()?;
        if first && scanner.peek()? == Some(b'}') {
            scanner.next()?;
            break;
        }
        first = false;
        if scanner.peek()? != Some(b'"') {
            return Err(not_json("a key is expected in the top-level object"));
        }
        let raw_key = scanner.capture_value()?;
        let key: String = serde_json::from_slice(&raw_key).map_err(not_json)?;
        scanner.skip_whitespace()?;
        if scanner.expect_next()? != b':' {
            return Err(not_json(format!("':' is expected after the key {key:?}")));
        }
        scanner.skip_whitespace()?;
        if key == "@graph" && scanner.peek()? == Some(b'[') {
            has_graph = true;
            scanner.next()?;
            index_graph(&mut scanner, &mut index)?;
        } else {
            let text = scanner.capture_value()?;
            serde_json::from_slice::<serde::de::IgnoredAny>(&text).map_err(not_json)?;
        }
        scanner.skip_whitespace()?;
        match scanner.expect_next()? {
            b',' => {}
            b'}' => break,
            other => {
                return Err(not_json(format!(
                    "unexpected {:?} in the top-level object",
                    char::from(other)
                )));
            }
        }
    }
    scanner.skip_whitespace()?;
    if scanner.peek()?.is_some() {
        return Err(not_json("trailing characters after the top-level object"));
    }
    if !has_graph {
        return Err(no_graph());
    }
    Ok(index)
}

/// Indexes the elements of `@graph`, whose `[` was read.
fn index_graph<R: BufRead>(
    scanner: &mut Scanner<R>,
    index: &mut HashMap<Box<str>, Span>,
) -> Result<()> {
    let mut first = true;
    loop {
        scanner.skip_whitespace()?;
        if first && scanner.peek()? == Some(b']') {
            scanner.next()?;
            return Ok(());
        }
        first = false;
        let offset = scanner.position;
        let text = scanner.capture_value()?;
        if text.first() == Some(&b'{') {
            let (id, is_dataset) = match serde_json::from_slice::<Head>(&text) {
                Ok(head) => (head.id, is_dataset_type(head.kind.as_ref())),
                // Repeated keys and the like: read the whole node the lenient way.
                Err(_) => {
                    let node: Value = serde_json::from_slice(&text).map_err(not_json)?;
                    (node.get("@id").cloned(), is_dataset_type(node.get("@type")))
                }
            };
            if let Some(Value::String(id)) = id {
                index.insert(
                    id.into_boxed_str(),
                    Span {
                        offset,
                        len: text.len() as u64,
                        is_dataset,
                    },
                );
            }
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(&text).map_err(not_json)?;
        }
        scanner.skip_whitespace()?;
        match scanner.expect_next()? {
            b',' => {}
            b']' => return Ok(()),
            other => {
                return Err(not_json(format!(
                    "unexpected {:?} in @graph",
                    char::from(other)
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file_with(text: &[u8]) -> std::fs::File {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, text).unwrap();
        file
    }

    #[test]
    fn a_flattened_graph_is_indexed_and_nodes_are_read_back_one_at_a_time() {
        let text = serde_json::to_vec_pretty(&json!({
            "@context": ["https://w3id.org/ro/crate/1.2/context", {"x": "y"}],
            "@graph": [
                {"@id": "./a/", "@type": ["Dataset"], "name": "A \"quoted\" [name] {}",
                 "hasPart": [{"@id": "./a/f.txt"}]},
                {"@id": "ro-crate-metadata.json", "about": {"@id": "./"}},
                "a stray string",
                {"@type": "Thing", "name": "no id"},
                {"@id": "./a/f.txt", "@type": "File", "contentSize": 12},
                {"@id": "./", "@type": "Dataset", "hasPart": [{"@id": "./a/"}]}
            ]
        }))
        .unwrap();
        let graph = Graph::from_file(file_with(&text)).unwrap();
        assert_eq!(graph.len(), 4);
        assert!(graph.is_dataset("./a/"));
        assert!(graph.is_dataset("./"));
        assert!(!graph.is_dataset("./a/f.txt"));
        assert_eq!(
            graph.node("./a/").unwrap()["name"],
            "A \"quoted\" [name] {}"
        );
        assert_eq!(graph.node("./a/f.txt").unwrap()["contentSize"], 12);
        assert_eq!(
            graph.node("ro-crate-metadata.json").unwrap()["about"]["@id"],
            "./"
        );
        assert!(graph.node("./missing/").is_none());
        assert!(graph.take_failure().is_none());
        // The same text indexed in memory gives the same nodes.
        let in_memory = Graph::from_bytes(text).unwrap();
        assert_eq!(in_memory.node("./a/"), graph.node("./a/"));
    }

    #[test]
    fn a_nested_graph_keeps_inline_objects_inside_their_node() {
        // Compact, on one line, with inline (nested) parts and a repeated @id.
        let text = br#"{"@graph":[{"@id":"./","@type":"Dataset","hasPart":[{"@id":"./e/","@type":"Dataset","name":"inline","hasPart":[{"@id":"./e/x.csv","@type":"File"}]}]},{"@id":"./e/","@type":"Dataset","name":"first"},{"@id":"./e/","@type":"Dataset","name":"last","author":{"@type":"Person","name":"Ada"}}],"@context":"https://w3id.org/ro/crate/1.1/context"}"#;
        let graph = Graph::from_file(file_with(text)).unwrap();
        assert_eq!(graph.len(), 2, "inline objects are not graph nodes");
        let root = graph.node("./").unwrap();
        assert_eq!(root["hasPart"][0]["hasPart"][0]["@id"], "./e/x.csv");
        let entry = graph.node("./e/").unwrap();
        assert_eq!(entry["name"], "last");
        assert_eq!(entry["author"]["name"], "Ada");
        assert!(!graph.contains("./e/x.csv"));
    }

    #[test]
    fn broken_json_and_missing_graphs_are_refused() {
        for (text, expected) in [
            (&b"{\"@graph\": [{\"@id\": \"a\"}"[..], "not valid JSON"),
            (b"{\"@graph\": [{\"@id\": \"a\",}]}", "not valid JSON"),
            (b"{\"@graph\": [], \"x\": tru}", "not valid JSON"),
            (b"{\"@graph\": []} trailing", "not valid JSON"),
            (b"not json", "not valid JSON"),
            (b"{\"@context\": {}}", "no @graph"),
            (b"[1, 2]", "no @graph"),
            (b"{\"@graph\": {\"@id\": \"a\"}}", "no @graph"),
        ] {
            let error = Graph::from_file(file_with(text)).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(text)
            );
        }
        assert!(
            Graph::from_bytes(b" {\"@graph\": [] } ".to_vec())
                .unwrap()
                .is_empty()
        );
    }
}
