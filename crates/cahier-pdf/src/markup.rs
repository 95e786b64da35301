//! Generates the typst source of one entity.
//!
//! Safety rule, relied on by the whole crate: user text only ever enters the source through
//! [`Literal`], as a typst string literal (`"…"`, where only `\` and `"` are special and are
//! escaped). Markup written by us is either a `#call(…)` in markup mode, always closed by `;` so
//! that nothing after it can extend the expression, or an argument list in code mode. The
//! Markdown body is turned into such calls event by event; raw HTML in it is shown as text.

use crate::world::Fonts;
use crate::{EntityPdf, Standard};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use typst::foundations::Bytes;

/// Writes user text as a typst string literal.
pub(crate) struct Literal<'a> {
    fonts: &'a Fonts,
}

impl Literal<'_> {
    /// `text` as a string literal. Control characters are dropped (except newlines and tabs)
    /// and characters no shipped font can draw become `?` (PDF/A refuses missing glyphs).
    pub(crate) fn of(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => {}
                c if c.is_control() => {}
                c if c == ' ' || self.fonts.covers(c) => out.push(c),
                _ => out.push('?'),
            }
        }
        out.push('"');
        out
    }
}

/// The whole typst source of `entity`. Image and attachment bytes it refers to are added to
/// `files` under virtual paths.
pub(crate) fn document(
    entity: &EntityPdf,
    standard: Standard,
    with_images: bool,
    fonts: &Fonts,
    files: &mut BTreeMap<String, Bytes>,
) -> String {
    let lit = Literal { fonts };
    let mut s = preamble(
        &lit,
        &entity.title,
        &entity.owner,
        &entity.printed_label,
        &entity.labels.lang,
    );
    entity_part(&mut s, entity, standard, with_images, &lit, files, false);
    s
}

/// The typst source of several entities in one document: a title, a table of contents of the
/// entries (also the PDF's bookmarks), then each entry from a new page, as [`document`] lays
/// out one.
pub(crate) fn selection(
    title: &str,
    entities: &[EntityPdf],
    standard: Standard,
    with_images: bool,
    fonts: &Fonts,
    files: &mut BTreeMap<String, Bytes>,
) -> String {
    let lit = Literal { fonts };
    let labels = entities
        .first()
        .map(|e| e.labels.clone())
        .unwrap_or_default();
    let printed = entities
        .first()
        .map(|e| e.printed_label.clone())
        .unwrap_or_default();
    let mut s = preamble(&lit, title, "Cahier", &printed, &labels.lang);
    let _ = writeln!(s, "#show heading.where(level: 1): set text(size: 18pt)\n");
    let _ = writeln!(
        s,
        "#text(size: 20pt, weight: \"bold\")[#{};]\n",
        lit.of(title)
    );
    let _ = writeln!(
        s,
        "#outline(title: [#{};], depth: 1);\n",
        lit.of(&labels.contents)
    );
    for entity in entities {
        s.push_str("#pagebreak(weak: true);\n\n");
        entity_part(&mut s, entity, standard, with_images, &lit, files, true);
    }
    s
}

fn preamble(lit: &Literal<'_>, title: &str, author: &str, printed: &str, lang: &str) -> String {
    let mut s = String::new();
    let lang = if lang == "fr" { "fr" } else { "en" };
    let _ = writeln!(
        s,
        "#set document(title: {}, author: {})",
        lit.of(title),
        lit.of(author)
    );
    let _ = writeln!(s, "#set text(size: 10pt, lang: \"{lang}\")");
    let _ = writeln!(
        s,
        "#show raw: set text(font: \"DejaVu Sans Mono\", size: 8pt)"
    );
    let _ = writeln!(s, "#set table(stroke: 0.5pt + luma(160), inset: 4pt)");
    let _ = writeln!(s, "#set heading(numbering: none)");
    let _ = writeln!(
        s,
        "#set page(paper: \"a4\", margin: 2cm, footer: context [#set text(size: 8pt); #{}; #h(1fr) #counter(page).display(\"1 / 1\", both: true);])",
        lit.of(printed)
    );
    s
}

/// One entity's sections. In a selection its title is a level-1 heading (listed in the table
/// of contents and the bookmarks) and its attached files are named after its id.
fn entity_part(
    s: &mut String,
    entity: &EntityPdf,
    standard: Standard,
    with_images: bool,
    lit: &Literal<'_>,
    files: &mut BTreeMap<String, Bytes>,
    in_selection: bool,
) {
    let l = &entity.labels;
    // Header: title, ids and dates.
    if in_selection {
        let _ = writeln!(
            s,
            "#heading(level: 1, outlined: true, bookmarked: true)[#{};];\n",
            lit.of(&entity.title)
        );
    } else {
        let _ = writeln!(
            s,
            "#text(size: 18pt, weight: \"bold\")[#{};]\n",
            lit.of(&entity.title)
        );
    }
    let _ = writeln!(
        s,
        "#text(size: 9pt)[#{}; · id #{}; · elabid #raw({}); · uuid #raw({});]\n",
        lit.of(&entity.kind),
        lit.of(&entity.id.to_string()),
        lit.of(&entity.elabid),
        lit.of(&entity.uuid)
    );
    let mut info: Vec<(&str, String)> = vec![
        (&l.owner, entity.owner.clone()),
        (&l.team, entity.team.clone()),
        (&l.created, entity.created.clone()),
        (&l.modified, entity.modified.clone()),
    ];
    if let Some(date) = &entity.date {
        info.push((&l.date, date.clone()));
    }
    if let Some(status) = &entity.status {
        info.push((&l.status, status.clone()));
    }
    if let Some(category) = &entity.category {
        info.push((&l.category, category.clone()));
    }
    if !entity.tags.is_empty() {
        info.push((&l.tags, entity.tags.join(", ")));
    }
    s.push_str("#table(columns: (auto, 1fr), stroke: none, inset: 2pt, ");
    for (label, value) in &info {
        let _ = write!(s, "[#strong({});], [#{};], ", lit.of(label), lit.of(value));
    }
    s.push_str(");\n\n#line(length: 100%);\n\n");

    // Body.
    if entity.body_is_html {
        for paragraph in html_text(&entity.body).split("\n\n") {
            if !paragraph.trim().is_empty() {
                let _ = write!(s, "#{};\n\n", lit.of(paragraph.trim()));
            }
        }
    } else {
        markdown(s, &entity.body, entity, with_images, lit, files);
    }

    if !entity.fields.is_empty() {
        heading(s, lit, &l.fields);
        let _ = write!(
            s,
            "#table(columns: (auto, 1fr), table.header([#strong({});], [#strong({});]), ",
            lit.of(&l.name),
            lit.of(&l.value)
        );
        for field in &entity.fields {
            let value = match &field.unit {
                Some(unit) if !unit.is_empty() => format!("{} {unit}", field.value),
                _ => field.value.clone(),
            };
            let _ = write!(s, "[#{};], [#{};], ", lit.of(&field.name), lit.of(&value));
        }
        s.push_str(");\n\n");
    }

    if !entity.steps.is_empty() {
        heading(s, lit, &l.steps);
        s.push_str("#list(");
        for step in &entity.steps {
            let mark = if step.done { "[x] " } else { "[ ] " };
            let _ = write!(s, "[#{};", lit.of(&format!("{mark}{}", step.text)));
            if let Some(by) = &step.done_by {
                let _ = write!(
                    s,
                    " #text(size: 8pt)[#{};]",
                    lit.of(&format!("({} {by})", l.done))
                );
            }
            s.push_str("], ");
        }
        s.push_str(");\n\n");
    }

    if !entity.links.is_empty() {
        heading(s, lit, &l.links);
        s.push_str("#list(");
        for link in &entity.links {
            let _ = write!(
                s,
                "[#{};], ",
                lit.of(&format!("{} #{} — {}", link.kind, link.id, link.title))
            );
        }
        s.push_str(");\n\n");
    }

    if !entity.attachments.is_empty() || !entity.missing.is_empty() {
        heading(s, lit, &l.attachments);
    }
    if !entity.attachments.is_empty() {
        let _ = write!(
            s,
            "#table(columns: (1fr, auto, auto), table.header([#strong({});], [#strong({});], [#strong(\"SHA-256\");]), ",
            lit.of(&l.name),
            lit.of(&l.size)
        );
        for attachment in &entity.attachments {
            let _ = write!(
                s,
                "[#{};], [#{};], [#text(size: 6.5pt, raw({}));], ",
                lit.of(&attachment.name),
                lit.of(&attachment.size.to_string()),
                lit.of(&attachment.sha256)
            );
        }
        s.push_str(");\n\n");
    }
    for line in &entity.missing {
        let _ = write!(s, "#emph[#{};];\n\n", lit.of(line));
    }

    heading(s, lit, &l.history);
    let _ = write!(
        s,
        "#{};\n\n",
        lit.of(&format!(
            "{}: {} · {}: {}",
            l.versions, entity.history.versions, l.last_change, entity.history.last_change
        ))
    );
    if !entity.history.offline.is_empty() {
        let _ = write!(s, "#{};\n\n", lit.of(&entity.history.offline));
    }

    heading(s, lit, &l.timestamps);
    if entity.timestamps.is_empty() {
        let _ = write!(s, "#{};\n\n", lit.of(&l.none));
    } else {
        s.push_str("#table(columns: (auto, auto, 1fr), ");
        for proof in &entity.timestamps {
            let _ = write!(
                s,
                "[#{};], [#{};], [#text(size: 6.5pt, raw({}));], ",
                lit.of(&proof.time),
                lit.of(&proof.tsa),
                lit.of(&proof.hash)
            );
        }
        s.push_str(");\n\n");
    }

    heading(s, lit, &l.signatures);
    if entity.signatures.is_empty() {
        let _ = write!(s, "#{};\n\n", lit.of(&l.none));
    } else {
        s.push_str("#table(columns: (1fr, auto, auto), ");
        for proof in &entity.signatures {
            let _ = write!(
                s,
                "[#{};], [#{};], [#{};], ",
                lit.of(&proof.signer),
                lit.of(&proof.meaning),
                lit.of(&proof.time)
            );
        }
        s.push_str(");\n\n");
    }

    if standard == Standard::PdfA3b {
        for (n, file) in entity.embedded.iter().enumerate() {
            let path = format!("/attached/{}", files.len());
            let name = if in_selection {
                format!("{}-{}", entity.id, file.name)
            } else {
                file.name.clone()
            };
            let _ = writeln!(
                s,
                "#pdf.attach({}, read({}, encoding: none), relationship: \"supplement\", mime-type: {}, description: {});",
                lit.of(&file_name(&name, n)),
                lit.of(&path),
                lit.of(&file.mime_type),
                lit.of(&file.description)
            );
            files.insert(path, Bytes::new(file.data.clone()));
        }
    }
}

fn heading(s: &mut String, lit: &Literal<'_>, text: &str) {
    let _ = write!(s, "#heading(level: 2)[#{};];\n\n", lit.of(text));
}

/// A name typst accepts as the path of an attached file: plain characters, no folders.
fn file_name(name: &str, n: usize) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        format!("attachment-{n}")
    } else {
        cleaned.to_owned()
    }
}

/// What is open while walking the Markdown events.
enum Open {
    /// Inline or block element closed by `]` (+ `;`).
    Bracket,
    /// A list (`#list(` / `#enum(`), closed by `);`.
    List,
    /// A list item or table cell, closed by `], `.
    Item,
    /// A table, closed by `);`.
    Table,
    /// A table header, closed by `),`.
    Header,
    /// A table row: nothing to write.
    Row,
    /// A code block: text is collected, written at the end as `#raw(…)`.
    Code(Option<String>),
    /// An image: its alt text is collected.
    Image(String),
    /// A link: its target is written after its text.
    Link(String),
    /// An element written as nothing.
    Nothing,
}

fn markdown(
    s: &mut String,
    body: &str,
    entity: &EntityPdf,
    with_images: bool,
    lit: &Literal<'_>,
    files: &mut BTreeMap<String, Bytes>,
) {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES;
    let mut stack: Vec<Open> = Vec::new();
    let mut code = String::new();
    let mut alt = String::new();
    for event in Parser::new_ext(body, options) {
        let collecting = matches!(stack.last(), Some(Open::Code(_) | Open::Image(_)));
        match event {
            Event::Start(_) if collecting => stack.push(Open::Nothing),
            Event::Start(tag) => {
                let open = match tag {
                    Tag::Paragraph => Open::Nothing,
                    Tag::Heading { level, .. } => {
                        let level = match level {
                            HeadingLevel::H1 => 2,
                            HeadingLevel::H2 => 3,
                            HeadingLevel::H3 => 4,
                            HeadingLevel::H4 => 5,
                            _ => 6,
                        };
                        let _ = write!(s, "#heading(level: {level})[");
                        Open::Bracket
                    }
                    Tag::BlockQuote(_) => {
                        s.push_str("#quote(block: true)[");
                        Open::Bracket
                    }
                    Tag::CodeBlock(kind) => {
                        code.clear();
                        Open::Code(match kind {
                            CodeBlockKind::Fenced(lang) if !lang.is_empty() => {
                                Some(lang.to_string())
                            }
                            _ => None,
                        })
                    }
                    Tag::List(Some(start)) => {
                        let _ = write!(s, "#enum(start: {start}, ");
                        Open::List
                    }
                    Tag::List(None) => {
                        s.push_str("#list(");
                        Open::List
                    }
                    Tag::Item => {
                        s.push('[');
                        Open::Item
                    }
                    Tag::FootnoteDefinition(label) => {
                        let _ = write!(s, "#block[#super({});", lit.of(&label));
                        Open::Bracket
                    }
                    Tag::Table(alignments) => {
                        let _ = write!(s, "#table(columns: {}, ", alignments.len().max(1));
                        Open::Table
                    }
                    Tag::TableHead => {
                        s.push_str("table.header(");
                        Open::Header
                    }
                    Tag::TableRow => Open::Row,
                    Tag::TableCell => {
                        s.push('[');
                        Open::Item
                    }
                    Tag::Emphasis => {
                        s.push_str("#emph[");
                        Open::Bracket
                    }
                    Tag::Strong => {
                        s.push_str("#strong[");
                        Open::Bracket
                    }
                    Tag::Strikethrough => {
                        s.push_str("#strike[");
                        Open::Bracket
                    }
                    Tag::Link { dest_url, .. } => Open::Link(dest_url.to_string()),
                    Tag::Image { dest_url, .. } => {
                        alt.clear();
                        Open::Image(dest_url.to_string())
                    }
                    _ => Open::Nothing,
                };
                stack.push(open);
            }
            Event::End(end) => {
                let Some(open) = stack.pop() else { continue };
                match open {
                    Open::Bracket => s.push_str("];"),
                    Open::List | Open::Table => s.push_str(");"),
                    Open::Item => s.push_str("], "),
                    Open::Header => s.push_str("), "),
                    Open::Row => {}
                    Open::Code(lang) => {
                        let _ = write!(s, "#raw(block: true, {}", lit.of(&code));
                        if let Some(lang) = lang {
                            // Only as a label: typst highlights known languages, never runs them.
                            let _ = write!(s, ", lang: {}", lit.of(&lang));
                        }
                        s.push_str(");");
                    }
                    Open::Image(dest) => image(s, entity, with_images, lit, files, &dest, &alt),
                    Open::Link(dest) => {
                        if !dest.is_empty() {
                            let _ =
                                write!(s, " #text(size: 8pt)[#{};]", lit.of(&format!("<{dest}>")));
                        }
                    }
                    Open::Nothing => {}
                }
                if matches!(
                    end,
                    TagEnd::Paragraph
                        | TagEnd::Heading(_)
                        | TagEnd::BlockQuote(_)
                        | TagEnd::CodeBlock
                        | TagEnd::List(_)
                        | TagEnd::Table
                        | TagEnd::FootnoteDefinition
                ) && !in_code_args(&stack)
                {
                    s.push_str("\n\n");
                }
            }
            Event::Text(text) if collecting => match stack.last() {
                Some(Open::Code(_)) => code.push_str(&text),
                _ => alt.push_str(&text),
            },
            Event::Text(text) => {
                let _ = write!(s, "#{};", lit.of(&text));
            }
            Event::Code(text) => {
                if collecting {
                    alt.push_str(&text);
                } else {
                    let _ = write!(s, "#raw({});", lit.of(&text));
                }
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                let text = html_text(&html);
                if !text.trim().is_empty() && !collecting {
                    let _ = write!(s, "#{};", lit.of(&text));
                }
            }
            Event::SoftBreak => s.push(' '),
            Event::HardBreak => s.push_str("#linebreak();"),
            Event::Rule => s.push_str("#line(length: 100%);\n\n"),
            Event::TaskListMarker(done) => {
                s.push_str(if done { "#\"[x] \";" } else { "#\"[ ] \";" });
            }
            Event::FootnoteReference(label) => {
                let _ = write!(s, "#super({});", lit.of(&label));
            }
            _ => {}
        }
    }
    // Close whatever a malformed event stream left open, so the source always parses.
    while let Some(open) = stack.pop() {
        match open {
            Open::Bracket => s.push_str("];"),
            Open::List | Open::Table => s.push_str(");"),
            Open::Item => s.push_str("], "),
            Open::Header => s.push_str("), "),
            _ => {}
        }
    }
    s.push_str("\n\n");
}

/// Whether the innermost open element takes code-mode arguments (a list or a table), where a
/// paragraph break must not be written.
fn in_code_args(stack: &[Open]) -> bool {
    matches!(
        stack.last(),
        Some(Open::List | Open::Table | Open::Header | Open::Row)
    )
}

/// An image of the body: the attachment it names, if the caller gave its bytes, else its alt
/// text and name.
fn image(
    s: &mut String,
    entity: &EntityPdf,
    with_images: bool,
    lit: &Literal<'_>,
    files: &mut BTreeMap<String, Bytes>,
    dest: &str,
    alt: &str,
) {
    let path = dest.split(['?', '#']).next().unwrap_or(dest);
    let name = path.rsplit('/').next().unwrap_or(path);
    let bytes = entity.images.get(dest).or_else(|| entity.images.get(name));
    match bytes {
        Some(bytes) if with_images => {
            // One virtual file per distinct image, however many times and entries show it, so
            // the layout holds its bytes once (issue #8).
            let shown = files
                .iter()
                .find(|(path, held)| path.starts_with("/images/") && held[..] == bytes[..])
                .map(|(path, _)| path.clone());
            let path = match shown {
                Some(path) => path,
                None => {
                    let path = format!("/images/{}", files.len());
                    files.insert(path.clone(), Bytes::new(bytes.clone()));
                    path
                }
            };
            let _ = write!(
                s,
                "#image({}, alt: {});",
                lit.of(&path),
                lit.of(if alt.is_empty() { name } else { alt })
            );
        }
        _ => {
            let _ = write!(s, "#emph[#{};];", lit.of(&format!("[{alt}: {dest}]")));
        }
    }
}

/// The text of an HTML fragment: tags removed, line breaks kept, common entities decoded.
fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = &rest[start..];
            break;
        };
        let tag = rest[start + 1..start + end].to_ascii_lowercase();
        if tag.starts_with("br") || tag.starts_with("/p") || tag.starts_with("/div") {
            out.push('\n');
            if tag.starts_with("/p") {
                out.push('\n');
            }
        } else if tag.starts_with("/td") || tag.starts_with("/th") {
            out.push(' ');
        } else if tag.starts_with("/tr") || tag.starts_with("/li") || tag.starts_with("/h") {
            out.push('\n');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        let lit = Literal {
            fonts: crate::world::fonts(),
        };
        assert_eq!(lit.of("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(lit.of("#panic()"), "\"#panic()\"");
    }

    #[test]
    fn html_bodies_lose_their_tags() {
        assert_eq!(html_text("<p>a &amp; b</p><p>c</p>"), "a & b\n\nc\n\n");
    }
}
