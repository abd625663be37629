//! The ERPNext bridge: ERPNext is the system of record; the field works on documents.
//!
//! - [`client`]: the Frappe REST client and the classification of its answers.
//! - [`mapping`]: which ERPNext field holds which register, both ways.
//! - [`plan`]: what reconciling a document should do, decided from the three records alone.
//! - [`state`]: the bridge's durable state (shadows, issues, markers, cursors), typed.
//! - [`bridge`]: carries the plan out per document; the outbound cursor, polling, issues.
//! - [`setup`]: creates the custom doctypes and fields the mapping needs in a real ERPNext.

pub mod bridge;
pub mod client;
pub mod mapping;
pub mod plan;
pub mod state;

pub use bridge::{Bridge, BridgeOptions, BridgeStats, Issue, Outcome, erpnext_author};
pub use client::{ErpClient, ErpConfig, ErpError};

/// `sync-server erpnext setup`: the doctypes and fields the mapping needs.
pub mod setup {
    use serde_json::{Map, Value, json};

    use super::client::{ErpClient, ErpError};
    use super::mapping::{self, Conv, DocMap, ID_FIELD, ITEM_DATA_FIELD, ITEM_KEY_FIELD, TableMap};

    /// What setup did, one line per object.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Report {
        pub created: Vec<String>,
        pub existing: Vec<String>,
    }

    /// Where ERPNext should send its webhooks, and the secret it signs them with.
    #[derive(Debug, Clone)]
    pub struct WebhookTarget {
        pub url: String,
        pub secret: crate::settings::Secret,
    }

    fn label(fieldname: &str) -> String {
        let mut out = String::new();
        for (i, w) in fieldname.trim_start_matches("fsm_").split('_').enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        }
        if fieldname.starts_with("fsm_") {
            format!("FSM {out}")
        } else {
            out
        }
    }

    fn field(fieldname: &str, conv: Conv) -> Value {
        let (fieldtype, options) = conv.fieldtype();
        let mut f = json!({
            "fieldname": fieldname,
            "label": label(fieldname),
            "fieldtype": fieldtype,
        });
        let options = match conv {
            Conv::Select(o) => Some(o.values().join("\n")),
            _ => options.map(str::to_owned),
        };
        if let (Some(o), Some(m)) = (options, f.as_object_mut()) {
            m.insert("options".into(), Value::String(o));
        }
        f
    }

    /// The hidden field an earlier version kept a time in, as Unix milliseconds: kept so a site
    /// set up then reads the same way as a new one until the bridge has rewritten its values.
    fn legacy_ms_field(f: &mapping::FieldMap) -> Option<Value> {
        f.legacy_ms.map(|old| {
            json!({
                "fieldname": old, "label": format!("{} (earlier version)", label(old)),
                "fieldtype": "Data", "hidden": 1,
            })
        })
    }

    fn id_field() -> Value {
        json!({
            "fieldname": ID_FIELD,
            "label": "FSM ID",
            "fieldtype": "Data",
            "unique": 1,
            "read_only": 1,
            "in_standard_filter": 1,
        })
    }

    /// The fields a mapped doctype needs (besides what ERPNext defines itself).
    fn fields_of(map: &DocMap) -> Vec<Value> {
        let mut out = vec![id_field()];
        out.extend(
            map.fields
                .iter()
                .filter(|f| !f.standard)
                .map(|f| field(f.erp, f.conv)),
        );
        out.extend(map.fields.iter().filter_map(legacy_ms_field));
        out.extend(map.tables.iter().map(|t| {
            json!({
                "fieldname": t.field,
                "label": label(t.field),
                "fieldtype": "Table",
                "options": t.child_doctype,
            })
        }));
        out
    }

    /// A child table's columns: the item key, one typed column per item field (the first few
    /// shown in the grid), and the JSON column rows written by an earlier version still use.
    fn child_fields(t: &TableMap) -> Vec<Value> {
        let mut out = vec![json!({
            "fieldname": ITEM_KEY_FIELD, "label": "Item", "fieldtype": "Data", "read_only": 1,
        })];
        for (i, col) in t.columns.iter().enumerate() {
            let mut f = field(col.erp, col.conv);
            if let Some(m) = f.as_object_mut()
                && i < 4
            {
                m.insert("in_list_view".into(), Value::from(1));
            }
            out.push(f);
        }
        out.extend(t.columns.iter().filter_map(legacy_ms_field));
        out.push(json!({
            "fieldname": ITEM_DATA_FIELD, "label": "Data (earlier version)",
            "fieldtype": "Long Text", "hidden": 1,
        }));
        out
    }

    fn permissions() -> Value {
        json!([{"role": "System Manager", "read": 1, "write": 1, "create": 1, "delete": 1,
                "report": 1, "export": 1}])
    }

    async fn ensure_doctype(
        erp: &ErpClient,
        name: &str,
        body: Map<String, Value>,
        report: &mut Report,
    ) -> Result<Option<Value>, ErpError> {
        match erp.get("DocType", name).await {
            Ok(existing) => {
                report.existing.push(format!("DocType {name}"));
                Ok(Some(existing))
            }
            Err(ErpError::NotFound) => {
                erp.insert("DocType", &body).await?;
                report.created.push(format!("DocType {name}"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_custom_field(
        erp: &ErpClient,
        doctype: &str,
        existing: &[String],
        f: &Value,
        report: &mut Report,
    ) -> Result<(), ErpError> {
        let fieldname = f.get("fieldname").and_then(Value::as_str).unwrap_or("");
        let key = format!("{doctype}.{fieldname}");
        if existing.iter().any(|e| e == fieldname) {
            report.existing.push(format!("field {key}"));
            return Ok(());
        }
        match erp
            .get("Custom Field", &format!("{doctype}-{fieldname}"))
            .await
        {
            Ok(_) => {
                report.existing.push(format!("field {key}"));
                Ok(())
            }
            Err(ErpError::NotFound) => {
                let mut body = f.as_object().cloned().unwrap_or_default();
                body.insert("dt".into(), Value::String(doctype.to_owned()));
                erp.insert("Custom Field", &body).await?;
                report.created.push(format!("field {key}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn fieldnames(doctype: &Value) -> Vec<String> {
        doctype
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("fieldname").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Creates what is missing; leaves what exists. Safe to run again.
    /// What Payment Entries for Stripe's payments need: the Mode of Payment they record, tied
    /// to the account payments are received into for `company` (ERPNext's companies each keep
    /// their own accounts).
    pub async fn payments(
        erp: &ErpClient,
        mode_of_payment: &str,
        account: Option<(&str, &str)>,
    ) -> Result<Report, ErpError> {
        let mut report = Report::default();
        let what = format!("Mode of Payment {mode_of_payment}");
        match erp.get("Mode of Payment", mode_of_payment).await {
            Ok(_) => report.existing.push(what),
            Err(ErpError::NotFound) => {
                let accounts: Vec<Value> = account
                    .map(|(company, acc)| json!({"company": company, "default_account": acc}))
                    .into_iter()
                    .collect();
                let body = json!({
                    "mode_of_payment": mode_of_payment, "type": "Bank", "enabled": 1,
                    "accounts": accounts,
                });
                erp.insert("Mode of Payment", &obj(body)).await?;
                report.created.push(what);
            }
            Err(e) => return Err(e),
        }
        Ok(report)
    }

    pub async fn run(erp: &ErpClient, webhook: Option<&WebhookTarget>) -> Result<Report, ErpError> {
        erp.logged_user().await?;
        let mut report = Report::default();
        for map in mapping::ALL {
            if !map.custom {
                // A standard doctype (Customer): only our custom fields.
                for f in fields_of(map) {
                    ensure_custom_field(erp, map.doctype, &[], &f, &mut report).await?;
                }
                continue;
            }
            for t in map.tables {
                let fields = child_fields(t);
                let child = json!({
                    "name": t.child_doctype, "module": "Support", "custom": 1, "istable": 1,
                    "fields": fields,
                });
                if let Some(existing) =
                    ensure_doctype(erp, t.child_doctype, obj(child), &mut report).await?
                {
                    // A table set up by an earlier version (item key and JSON only): its typed
                    // columns are added; its rows keep their JSON until the bridge rewrites them.
                    let have = fieldnames(&existing);
                    for f in &fields {
                        ensure_custom_field(erp, t.child_doctype, &have, f, &mut report).await?;
                    }
                }
            }
            let fields = fields_of(map);
            let body = json!({
                "name": map.doctype, "module": "Support", "custom": 1,
                "autoname": map.autoname, "naming_rule": "Expression",
                "track_changes": 1, "sort_field": "modified", "sort_order": "DESC",
                "fields": fields, "permissions": permissions(),
            });
            if let Some(existing) = ensure_doctype(erp, map.doctype, obj(body), &mut report).await?
            {
                // Made earlier (or by someone else): add only what it lacks.
                let have = fieldnames(&existing);
                for f in &fields {
                    ensure_custom_field(erp, map.doctype, &have, f, &mut report).await?;
                }
            }
        }
        if let Some(target) = webhook {
            for map in mapping::ALL {
                for event in ["on_update", "on_trash"] {
                    let existing = erp
                        .list(
                            "Webhook",
                            &["name"],
                            &json!([
                                ["webhook_doctype", "=", map.doctype],
                                ["webhook_docevent", "=", event],
                                ["request_url", "=", target.url]
                            ]),
                            "creation asc",
                            0,
                            1,
                        )
                        .await?;
                    let what = format!("Webhook {} {event}", map.doctype);
                    if !existing.is_empty() {
                        report.existing.push(what);
                        continue;
                    }
                    let body = json!({
                        "webhook_doctype": map.doctype,
                        "webhook_docevent": event,
                        "request_url": target.url,
                        "request_method": "POST",
                        "request_structure": "JSON",
                        "webhook_json": "{\"doctype\": \"{{ doc.doctype }}\", \"name\": \"{{ doc.name }}\", \"modified\": \"{{ doc.modified }}\", \"event\": \"".to_owned() + event + "\"}",
                        "enable_security": 1,
                        "webhook_secret": target.secret.expose(),
                        "enabled": 1,
                    });
                    erp.insert("Webhook", &obj(body)).await?;
                    report.created.push(what);
                }
            }
        }
        Ok(report)
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// Verifies an ERPNext webhook: `X-Frappe-Webhook-Signature` is base64(HMAC-SHA256(secret, body)).
pub fn verify_webhook(secret: &[u8], body: &[u8], signature: &str) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&expected).is_ok()
}
