//! The config reference (`docs/CONFIG.md`), written from the code so it cannot drift: every
//! place a mapping can stand and every key serde reads there ([`super::keys::PLACES`], from
//! serde's own derive), each with the doc comment its field has in `wire.rs`. A field without
//! one is an error, so a new key cannot land undocumented.

/// The wire structs' source, for their doc comments.
const WIRE: &str = include_str!("wire.rs");

/// One key of a wire struct as the source declares it.
struct Field {
    name: String,
    doc: String,
    required: bool,
}

/// The config reference as Markdown, or the keys that have no doc comment.
pub fn markdown() -> Result<String, String> {
    let mut out = String::from(
        "# Config reference\n\n\
         Every key of the config file (`/etc/seed/seed.yaml`, `seed check FILE`), section by \
         section. Written from the code (`seed/src/config/wire.rs`, the structs serde reads \
         the file into) by `SEED_UPDATE_DOCS=1 cargo test -p seed-tests --test docs`; that \
         test fails when this page and the code differ. `[]` is every item of a list. \
         `seed config example` prints a whole rack.\n",
    );
    let mut missing = Vec::new();
    for (place, strukt, fields) in super::keys::PLACES {
        let (doc, declared) =
            parse(strukt).ok_or_else(|| format!("no struct {strukt} in wire.rs"))?;
        let title = if place.is_empty() { "top level" } else { place };
        out.push_str(&format!("\n## `{title}`\n\n"));
        if !doc.is_empty() {
            out.push_str(&doc);
            out.push_str("\n\n");
        }
        out.push_str("| key | | what |\n|---|---|---|\n");
        for name in fields() {
            let Some(field) = declared.iter().find(|f| f.name == *name) else {
                missing.push(format!("{place}.{name} ({strukt}: not found in wire.rs)"));
                continue;
            };
            if field.doc.is_empty() {
                missing.push(format!("{place}.{name} ({strukt})"));
            }
            out.push_str(&format!(
                "| `{name}` | {} | {} |\n",
                if field.required {
                    "required"
                } else {
                    "optional"
                },
                field.doc.replace('|', "\\|")
            ));
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "config keys without a doc comment: {}",
            missing.join(", ")
        ))
    }
}

/// The doc comment of `pub struct NAME` and its fields, from [`WIRE`].
fn parse(name: &str) -> Option<(String, Vec<Field>)> {
    let lines: Vec<&str> = WIRE.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == format!("pub struct {name} {{"))?;
    // The struct's doc: the `///` lines above its attributes.
    let mut doc = Vec::new();
    for line in lines[..start].iter().rev() {
        let line = line.trim();
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else if !line.starts_with("#[") {
            break;
        }
    }
    doc.reverse();
    let mut fields = Vec::new();
    let (mut field_doc, mut rename, mut default) = (Vec::new(), None, false);
    for line in &lines[start + 1..] {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if let Some(text) = line.strip_prefix("///") {
            field_doc.push(text.trim().to_string());
        } else if line.starts_with("#[serde(") {
            if let Some(rest) = line.split("rename = \"").nth(1) {
                rename = rest.split('"').next().map(str::to_string);
            }
            default |= line.contains("default");
        } else if let Some(rest) = line.strip_prefix("pub ") {
            let (field, ty) = rest.split_once(':')?;
            fields.push(Field {
                name: rename.take().unwrap_or_else(|| field.trim().to_string()),
                doc: field_doc.join(" "),
                required: !default && !ty.trim().starts_with("Option<"),
            });
            field_doc.clear();
            default = false;
        }
    }
    Some((doc.join(" "), fields))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_key_is_documented() {
        let text = super::markdown().unwrap();
        assert!(text.contains("| `interface` | required |"), "{text}");
        assert!(
            text.contains("| `static` | optional |"),
            "renamed fields: {text}"
        );
    }
}
