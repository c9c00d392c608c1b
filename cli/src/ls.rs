//! `coffer ls` and `coffer trash ls`: the listing printed as the daemon
//! streams it (`Client::list_streamed`), each part flushed as it arrives:
//! `--json` as one array written an element at a time, the table with its
//! columns sized from the listing's head. The text is the same as printing
//! the whole listing at once (`output::json`, `output::summaries`).

use std::io::{self, BufWriter, Write};

use coffer_ipc::methods::{ItemListParams, ItemSummary, ItemsChunk};
use coffer_ipc::ClientError;

use crate::output::{self, Table};
use crate::{CliError, Ctx};

pub(crate) fn ls(ctx: &mut Ctx, folder: Option<String>, trash: bool) -> Result<(), CliError> {
    let mut printer = Printer {
        out: BufWriter::new(io::stdout().lock()),
        json: ctx.json,
        table: None,
        waiting: Vec::new(),
        printed: 0,
    };
    let params = ItemListParams {
        folder,
        trash,
        stream: true,
    };
    match ctx
        .client()?
        .list_streamed(&params, |part| printer.part(part))
        .and_then(|()| printer.end().map_err(ClientError::Output))
    {
        Ok(()) => Ok(()),
        Err(ClientError::Output(e)) => Err(output_failed(e)),
        Err(e) => {
            // What was printed stays printed; the error follows it.
            let _ = printer.out.flush();
            Err(e.into())
        }
    }
}

/// `coffer ls | head -1`: the reader has what it wanted; exit 0 without a
/// word, as `println!`'s broken pipe does (`exit_quietly_on_broken_pipe`).
fn output_failed(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Other(format!("cannot write the listing: {e}"))
}

struct Printer<W: Write> {
    out: W,
    json: bool,
    /// The table's columns, once the listing's head said them.
    table: Option<Table>,
    /// Rows that came before the head.
    waiting: Vec<ItemSummary>,
    printed: usize,
}

impl<W: Write> Printer<W> {
    fn part(&mut self, part: ItemsChunk) -> io::Result<()> {
        if self.json {
            for item in &part.items {
                output::json_element(&mut self.out, item, self.printed == 0)?;
                self.printed += 1;
            }
            return self.out.flush();
        }
        if let (None, Some(h)) = (self.table, part.head) {
            self.table = Some(Table::new(h.name_chars, h.folder_chars));
        }
        self.waiting.extend(part.items);
        self.rows()
    }

    /// Prints the rows that wait, once the columns are known.
    fn rows(&mut self) -> io::Result<()> {
        let Some(table) = self.table else {
            return Ok(());
        };
        for item in self.waiting.drain(..) {
            if self.printed == 0 {
                writeln!(self.out, "{}", table.header())?;
            }
            writeln!(self.out, "{}", table.row(&item))?;
            self.printed += 1;
        }
        self.out.flush()
    }

    fn end(&mut self) -> io::Result<()> {
        if self.json {
            output::json_end(&mut self.out, self.printed > 0)?;
        } else {
            // No head came: an older daemon's whole listing, in its reply.
            if self.table.is_none() {
                self.table = Some(Table::for_items(&self.waiting));
            }
            self.rows()?;
            if self.printed == 0 {
                writeln!(self.out, "(no items)")?;
            }
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use coffer_ipc::methods::{ItemSummary, ListingHead};

    use super::*;

    fn item(n: usize, folder: &str, urls: &[&str]) -> ItemSummary {
        ItemSummary {
            id: format!("{n:032x}"),
            folder: folder.into(),
            item_type: "login".into(),
            name: format!("Item \"{n}\" ✓"),
            username: n.is_multiple_of(2).then(|| format!("user{n}")),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            has_totp: n.is_multiple_of(3),
            updated_ms: n as i64,
            trashed_ms: None,
            archived: n.is_multiple_of(5),
            conflict: n.is_multiple_of(7),
        }
    }

    /// Prints `items` in parts of `sizes` (the head on part `head`, if
    /// any), as the daemon streams them.
    fn streamed(items: &[ItemSummary], sizes: &[usize], json: bool, head: Option<usize>) -> String {
        let mut p = Printer {
            out: Vec::new(),
            json,
            table: None,
            waiting: Vec::new(),
            printed: 0,
        };
        let mut rest = items;
        for (n, size) in sizes.iter().enumerate() {
            let (part, tail) = rest.split_at((*size).min(rest.len()));
            rest = tail;
            let head = (head == Some(n)).then(|| ListingHead {
                total: items.len(),
                name_chars: items
                    .iter()
                    .map(|i| i.name.chars().count())
                    .max()
                    .unwrap_or(0),
                folder_chars: items
                    .iter()
                    .map(|i| i.folder.chars().count())
                    .max()
                    .unwrap_or(0),
            });
            p.part(ItemsChunk {
                head,
                items: part.to_vec(),
            })
            .expect("in memory");
        }
        p.end().expect("in memory");
        String::from_utf8(p.out).expect("UTF-8")
    }

    fn whole_json(items: &[ItemSummary]) -> String {
        format!(
            "{}\n",
            serde_json::to_string_pretty(items).expect("serialises")
        )
    }

    fn whole_table(items: &[ItemSummary]) -> String {
        if items.is_empty() {
            return "(no items)\n".into();
        }
        let t = Table::for_items(items);
        let mut s = format!("{}\n", t.header());
        for i in items {
            s += &format!("{}\n", t.row(i));
        }
        s
    }

    #[test]
    fn a_streamed_listing_prints_the_same_text_as_the_whole() {
        let long = "a-folder-name-longer-than-the-column";
        let items: Vec<ItemSummary> = (0..12)
            .map(|n| {
                item(
                    n,
                    if n == 4 { long } else { "Ops" },
                    &["https://x", "y"][..n % 3],
                )
            })
            .collect();
        for n in [0, 1, 5, 12] {
            let items = &items[..n];
            for sizes in [&[0, 3, 9][..], &[1, 1, 100], &[64], &[]] {
                for head in [Some(0), Some(1), None] {
                    if sizes.len() > 1 && head.is_none() {
                        continue; // parts without a head: only an old daemon's one
                    }
                    let sizes = if sizes.is_empty() { &[n][..] } else { sizes };
                    assert_eq!(
                        streamed(items, sizes, true, head),
                        whole_json(items),
                        "{n} {sizes:?}"
                    );
                    assert_eq!(
                        streamed(items, sizes, false, head),
                        whole_table(items),
                        "{n} {sizes:?}"
                    );
                }
            }
        }
    }
}
