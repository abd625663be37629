//! Doctype metadata: the standard doctypes a fresh ERPNext site has (as far as the
//! recordings show them), and custom doctypes created over REST.

use serde_json::{Map, Value};

/// One field of a doctype.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) fieldname: String,
    pub(crate) label: String,
    pub(crate) fieldtype: String,
    pub(crate) options: String,
    pub(crate) reqd: bool,
    pub(crate) unique: bool,
    pub(crate) default: Option<String>,
    pub(crate) precision: Option<u32>,
}

impl Field {
    fn new(fieldname: &str, label: &str, fieldtype: &str) -> Self {
        Self {
            fieldname: fieldname.into(),
            label: label.into(),
            fieldtype: fieldtype.into(),
            options: String::new(),
            reqd: false,
            unique: false,
            default: None,
            precision: None,
        }
    }

    fn reqd(mut self) -> Self {
        self.reqd = true;
        self
    }

    fn options(mut self, options: &str) -> Self {
        self.options = options.into();
        self
    }

    fn default(mut self, default: &str) -> Self {
        self.default = Some(default.into());
        self
    }

    pub(crate) fn is_table(&self) -> bool {
        matches!(self.fieldtype.as_str(), "Table" | "Table MultiSelect")
    }

    /// Builds a field from a `DocField` or `Custom Field` JSON object.
    pub(crate) fn from_json(v: &Map<String, Value>) -> Option<Self> {
        let fieldname = v.get("fieldname")?.as_str()?.to_string();
        let fieldtype = v
            .get("fieldtype")
            .and_then(Value::as_str)
            .unwrap_or("Data")
            .to_string();
        let label = v
            .get("label")
            .and_then(Value::as_str)
            .map_or_else(|| fieldname.clone(), str::to_string);
        let flag = |k: &str| {
            v.get(k).is_some_and(|x| {
                x.as_i64() == Some(1) || x.as_bool() == Some(true) || x.as_str() == Some("1")
            })
        };
        let text = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Some(Self {
            fieldname,
            label,
            fieldtype,
            options: text("options").unwrap_or_default(),
            reqd: flag("reqd"),
            unique: flag("unique"),
            default: text("default"),
            precision: text("precision").and_then(|p| p.trim().parse().ok()),
        })
    }
}

/// How a doctype names new documents.
#[derive(Debug, Clone)]
pub(crate) enum Naming {
    /// `field:<fieldname>`.
    Field(String),
    /// `format:PREFIX{#####}SUFFIX`, or a naming series `PREFIX.#####`.
    Format {
        prefix: String,
        digits: usize,
        suffix: String,
    },
    Hash,
    Autoincrement,
    /// ERPNext Customer: the customer name, `X - 1` when taken.
    Customer,
    /// `<address_title>-<address_type>`.
    Address,
    /// `<full_name>-<first linked name>`.
    Contact,
    /// `<dt>-<fieldname>`.
    CustomField,
    /// The `name` the caller sends (DocType itself).
    Prompt,
}

impl Naming {
    /// Parses a DocType's `autoname`.
    pub(crate) fn parse(autoname: &str) -> Self {
        let a = autoname.trim();
        if let Some(field) = a.strip_prefix("field:") {
            return Self::Field(field.trim().into());
        }
        if a.eq_ignore_ascii_case("hash") || a.is_empty() {
            return Self::Hash;
        }
        if a.eq_ignore_ascii_case("autoincrement") {
            return Self::Autoincrement;
        }
        if a.eq_ignore_ascii_case("prompt") {
            return Self::Prompt;
        }
        let pattern = a.strip_prefix("format:").unwrap_or(a);
        if let Some(open) = pattern.find("{#") {
            let close = pattern[open..]
                .find('}')
                .map_or(pattern.len(), |c| open + c);
            let digits = pattern[open + 1..close]
                .chars()
                .filter(|c| *c == '#')
                .count();
            let suffix = pattern.get(close + 1..).unwrap_or("").to_string();
            return Self::Format {
                prefix: pattern[..open].into(),
                digits,
                suffix,
            };
        }
        if let Some(hashes) = pattern.find(".#") {
            let digits = pattern[hashes + 1..]
                .chars()
                .take_while(|c| *c == '#')
                .count();
            return Self::Format {
                prefix: pattern[..hashes].into(),
                digits,
                suffix: String::new(),
            };
        }
        Self::Hash
    }

    pub(crate) fn rule(autoname: &str) -> &'static str {
        match Self::parse(autoname) {
            Self::Field(_) => "By fieldname",
            Self::Hash => "Random",
            Self::Autoincrement => "Autoincrement",
            Self::Prompt => "Set by user",
            Self::Format { .. } if autoname.starts_with("format:") => "Expression (old style)",
            _ => "By \"Naming Series\" field",
        }
    }
}

/// A doctype's metadata.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) name: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) istable: bool,
    pub(crate) issingle: bool,
    pub(crate) naming: Naming,
    pub(crate) track_changes: bool,
    /// Documents are drafts (docstatus 0) until submitted (1); a create may submit at once.
    pub(crate) submittable: bool,
}

/// Columns every document row has.
pub(crate) const STANDARD: [&str; 7] = [
    "name",
    "owner",
    "creation",
    "modified",
    "modified_by",
    "docstatus",
    "idx",
];
/// Extra columns of child rows.
pub(crate) const CHILD_STANDARD: [&str; 3] = ["parent", "parentfield", "parenttype"];

impl Meta {
    fn new(name: &str, naming: Naming, fields: Vec<Field>) -> Self {
        Self {
            name: name.into(),
            fields,
            istable: false,
            issingle: false,
            naming,
            track_changes: false,
            submittable: false,
        }
    }

    fn child(name: &str, fields: Vec<Field>) -> Self {
        Self {
            istable: true,
            ..Self::new(name, Naming::Hash, fields)
        }
    }

    pub(crate) fn field(&self, fieldname: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.fieldname == fieldname)
    }

    /// Whether `column` can be selected or filtered on.
    pub(crate) fn has_column(&self, column: &str) -> bool {
        STANDARD.contains(&column)
            || (self.istable && CHILD_STANDARD.contains(&column))
            || self.field(column).is_some_and(|f| !f.is_table())
    }

    /// Main-table columns, in order (what `fields=["*"]` returns).
    pub(crate) fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = STANDARD.iter().map(|s| (*s).to_string()).collect();
        if self.istable {
            out.extend(CHILD_STANDARD.iter().map(|s| (*s).to_string()));
        }
        out.extend(
            self.fields
                .iter()
                .filter(|f| !f.is_table())
                .map(|f| f.fieldname.clone()),
        );
        out
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.is_table())
    }
}

fn data(names: &[&str]) -> Vec<Field> {
    names
        .iter()
        .map(|n| Field::new(n, &label_of(n), "Data"))
        .collect()
}

fn check(names: &[&str]) -> Vec<Field> {
    names
        .iter()
        .map(|n| Field::new(n, &label_of(n), "Check"))
        .collect()
}

/// `customer_name` → `Customer Name`.
pub(crate) fn label_of(fieldname: &str) -> String {
    fieldname
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The doctypes of a fresh site.
pub(crate) fn standard() -> Vec<Meta> {
    let mut customer_fields = vec![
        Field::new("naming_series", "Series", "Select")
            .options("CUST-.YYYY.-")
            .default("CUST-.YYYY.-"),
        Field::new("salutation", "Salutation", "Data"),
        Field::new("customer_name", "Customer Name", "Data").reqd(),
        Field::new("customer_type", "Customer Type", "Select")
            .options("Company\nIndividual\nPartnership")
            .default("Company")
            .reqd(),
        Field::new("customer_group", "Customer Group", "Link").options("Customer Group"),
        Field::new("territory", "Territory", "Link").options("Territory"),
    ];
    customer_fields.extend(data(&[
        "gender",
        "lead_name",
        "opportunity_name",
        "prospect_name",
        "account_manager",
        "image",
        "default_currency",
        "default_bank_account",
        "default_price_list",
    ]));
    customer_fields.extend(check(&["is_internal_customer"]));
    customer_fields.extend(data(&[
        "represents_company",
        "market_segment",
        "industry",
        "customer_pos_id",
        "website",
    ]));
    customer_fields.push(Field::new("language", "Print Language", "Data").default("en"));
    customer_fields.push(Field::new("customer_details", "Customer Details", "Text"));
    customer_fields.extend(data(&["customer_primary_address"]));
    customer_fields.push(Field::new("primary_address", "Primary Address", "Text"));
    customer_fields.extend(data(&[
        "customer_primary_contact",
        "mobile_no",
        "email_id",
        "first_name",
        "last_name",
        "tax_id",
        "tax_category",
        "tax_withholding_category",
        "payment_terms",
        "loyalty_program",
        "loyalty_program_tier",
        "default_sales_partner",
    ]));
    customer_fields.push(Field::new(
        "default_commission_rate",
        "Commission Rate",
        "Float",
    ));
    customer_fields.extend(check(&[
        "so_required",
        "dn_required",
        "exempt_from_sales_tax",
        "is_frozen",
        "disabled",
    ]));
    for (table, child) in [
        ("accounts", "Party Account"),
        ("sales_team", "Sales Team"),
        ("companies", "Allowed To Transact With"),
        ("credit_limits", "Customer Credit Limit"),
        ("portal_users", "Portal User"),
    ] {
        customer_fields.push(Field::new(table, &label_of(table), "Table").options(child));
    }
    let customer = Meta::new("Customer", Naming::Customer, customer_fields);

    let tree_group = |name: &str, own: &str, parent: &str| {
        let mut fields = vec![
            Field::new(own, &label_of(own), "Data").reqd(),
            Field::new(parent, &label_of(parent), "Link").options(name),
        ];
        fields.extend(check(&["is_group"]));
        Meta::new(name, Naming::Field(own.into()), fields)
    };
    let customer_group = tree_group(
        "Customer Group",
        "customer_group_name",
        "parent_customer_group",
    );
    let territory = tree_group("Territory", "territory_name", "parent_territory");

    let mut address_fields = vec![
        Field::new("address_title", "Address Title", "Data"),
        Field::new("address_type", "Address Type", "Select")
            .options("Billing\nShipping\nOffice\nPersonal\nPlant\nPostal\nShop\nSubsidiary\nWarehouse\nCurrent\nPermanent\nOther")
            .default("Billing")
            .reqd(),
        Field::new("address_line1", "Address Line 1", "Data").reqd(),
        Field::new("address_line2", "Address Line 2", "Data"),
        Field::new("city", "City/Town", "Data").reqd(),
    ];
    address_fields.extend(data(&["county", "state"]));
    address_fields.push(
        Field::new("country", "Country", "Data")
            .default("United States")
            .reqd(),
    );
    address_fields.extend(data(&["pincode", "email_id", "phone", "fax"]));
    address_fields.extend(check(&[
        "is_primary_address",
        "is_shipping_address",
        "disabled",
        "is_your_company_address",
    ]));
    address_fields.push(Field::new("links", "Links", "Table").options("Dynamic Link"));
    let address = Meta::new("Address", Naming::Address, address_fields);

    let dynamic_link = Meta::child(
        "Dynamic Link",
        vec![
            Field::new("link_doctype", "Link Document Type", "Link")
                .options("DocType")
                .reqd(),
            Field::new("link_name", "Link Name", "Dynamic Link")
                .options("link_doctype")
                .reqd(),
            Field::new("link_title", "Link Title", "Data"),
        ],
    );

    let mut contact_fields = data(&[
        "first_name",
        "middle_name",
        "last_name",
        "full_name",
        "email_id",
        "user",
        "address",
    ]);
    contact_fields.extend(check(&["sync_with_google_contacts"]));
    contact_fields.push(
        Field::new("status", "Status", "Select")
            .options("Passive\nOpen\nReplied")
            .default("Passive"),
    );
    contact_fields.extend(data(&[
        "salutation",
        "designation",
        "gender",
        "phone",
        "mobile_no",
        "company_name",
        "image",
        "google_contacts",
        "google_contacts_id",
    ]));
    contact_fields.extend(check(&[
        "pulled_from_google_contacts",
        "is_primary_contact",
        "is_billing_contact",
    ]));
    contact_fields.extend(data(&["department"]));
    contact_fields.extend(check(&["unsubscribed"]));
    contact_fields.push(Field::new("email_ids", "Email IDs", "Table").options("Contact Email"));
    contact_fields
        .push(Field::new("phone_nos", "Contact Numbers", "Table").options("Contact Phone"));
    contact_fields.push(Field::new("links", "Links", "Table").options("Dynamic Link"));
    let contact = Meta::new("Contact", Naming::Contact, contact_fields);
    let mut contact_email = vec![Field::new("email_id", "Email ID", "Data").reqd()];
    contact_email.extend(check(&["is_primary"]));
    let mut contact_phone = vec![Field::new("phone", "Number", "Data").reqd()];
    contact_phone.extend(check(&["is_primary_phone", "is_primary_mobile_no"]));

    let mut deleted_fields = data(&["deleted_name", "deleted_doctype"]);
    deleted_fields.push(Field::new("data", "Data", "Code"));
    deleted_fields.extend(check(&["restored"]));
    deleted_fields.extend(data(&["new_name"]));
    let deleted = Meta::new("Deleted Document", Naming::Hash, deleted_fields);

    let version = Meta::new(
        "Version",
        Naming::Hash,
        vec![
            Field::new("ref_doctype", "Ref DocType", "Link").options("DocType"),
            Field::new("docname", "Docname", "Data"),
            Field::new("data", "Data", "Code"),
        ],
    );

    let mut settings = Meta::new("System Settings", Naming::Prompt, Vec::new());
    settings.issingle = true;

    let mut webhook_fields = vec![
        Field::new("webhook_doctype", "DocType", "Link").options("DocType").reqd(),
        Field::new("webhook_docevent", "Doc Event", "Select")
            .options("after_insert\non_update\non_submit\non_cancel\non_trash\non_update_after_submit\non_change")
            .reqd(),
        Field::new("request_url", "Request URL", "Data").reqd(),
        Field::new("request_method", "Request Method", "Select").options("POST\nPUT\nDELETE").default("POST"),
        Field::new("request_structure", "Request Structure", "Select").options("\nForm URL-Encoded\nJSON"),
        Field::new("webhook_json", "JSON Request Body", "Code"),
        Field::new("condition", "Condition", "Small Text"),
        Field::new("webhook_secret", "Webhook Secret", "Password"),
    ];
    webhook_fields.extend(check(&["enable_security"]));
    webhook_fields.push(Field::new("enabled", "Enabled", "Check").default("1"));
    let webhook = Meta::new("Webhook", Naming::Hash, webhook_fields);

    let custom_field = Meta::new("Custom Field", Naming::CustomField, custom_field_fields());

    // The fields a payment page and a Payment Entry read; an invoice is submitted (docstatus 1)
    // to be payable, and its outstanding amount goes down as Payment Entries are submitted.
    let mut sales_invoice = Meta::new(
        "Sales Invoice",
        Naming::Format {
            prefix: "ACC-SINV-2026-".into(),
            digits: 5,
            suffix: String::new(),
        },
        vec![
            Field::new("customer", "Customer", "Link")
                .options("Customer")
                .reqd(),
            Field::new("customer_name", "Customer Name", "Data"),
            Field::new("company", "Company", "Data"),
            Field::new("debit_to", "Debit To", "Data"),
            Field::new("posting_date", "Date", "Date"),
            Field::new("currency", "Currency", "Data").reqd(),
            Field::new("grand_total", "Grand Total", "Currency"),
            Field::new("outstanding_amount", "Outstanding Amount", "Currency"),
            Field::new("status", "Status", "Select")
                .options("\nDraft\nUnpaid\nPaid\nOverdue\nCancelled"),
        ],
    );
    sales_invoice.submittable = true;
    // ERPNext's Payment Entry as a payment received from a customer; submitting it allocates
    // its references against the invoices' outstanding amounts.
    let mut payment_entry = Meta::new(
        "Payment Entry",
        Naming::Format {
            prefix: "ACC-PAY-2026-".into(),
            digits: 5,
            suffix: String::new(),
        },
        vec![
            Field::new("payment_type", "Payment Type", "Select")
                .options("Receive\nPay\nInternal Transfer")
                .reqd(),
            Field::new("party_type", "Party Type", "Data").reqd(),
            Field::new("party", "Party", "Link")
                .options("Customer")
                .reqd(),
            Field::new("company", "Company", "Data"),
            Field::new("posting_date", "Posting Date", "Date").reqd(),
            Field::new("mode_of_payment", "Mode of Payment", "Data"),
            Field::new("paid_from", "Account Paid From", "Data").reqd(),
            Field::new("paid_to", "Account Paid To", "Data").reqd(),
            Field::new("paid_amount", "Paid Amount", "Currency").reqd(),
            Field::new("received_amount", "Received Amount", "Currency").reqd(),
            Field::new("reference_no", "Cheque/Reference No", "Data"),
            Field::new("reference_date", "Cheque/Reference Date", "Date"),
            Field::new("references", "Payment References", "Table")
                .options("Payment Entry Reference"),
        ],
    );
    payment_entry.submittable = true;
    let mode_of_payment = Meta::new(
        "Mode of Payment",
        Naming::Field("mode_of_payment".into()),
        vec![
            Field::new("mode_of_payment", "Mode of Payment", "Data").reqd(),
            Field::new("enabled", "Enabled", "Check").default("1"),
            Field::new("type", "Type", "Select").options("Cash\nBank\nGeneral\nPhone"),
            Field::new("accounts", "Accounts", "Table").options("Mode of Payment Account"),
        ],
    );
    let mode_of_payment_account = Meta::child(
        "Mode of Payment Account",
        vec![
            Field::new("company", "Company", "Data"),
            Field::new("default_account", "Default Account", "Data"),
        ],
    );
    let payment_reference = Meta::child(
        "Payment Entry Reference",
        vec![
            Field::new("reference_doctype", "Type", "Data").reqd(),
            Field::new("reference_name", "Name", "Data").reqd(),
            Field::new("allocated_amount", "Allocated", "Currency"),
        ],
    );

    let mut out = vec![
        customer,
        customer_group,
        territory,
        address,
        dynamic_link,
        contact,
        Meta::child("Contact Email", contact_email),
        Meta::child("Contact Phone", contact_phone),
        deleted,
        version,
        settings,
        webhook,
        custom_field,
        sales_invoice,
        payment_entry,
        payment_reference,
        mode_of_payment,
        mode_of_payment_account,
        Meta::new("DocType", Naming::Prompt, Vec::new()),
        Meta::child("DocField", Vec::new()),
        Meta::child("DocPerm", Vec::new()),
    ];
    for child in [
        "Party Account",
        "Sales Team",
        "Allowed To Transact With",
        "Customer Credit Limit",
        "Portal User",
    ] {
        out.push(Meta::child(child, data(&["company", "account", "user"])));
    }
    out
}

fn custom_field_fields() -> Vec<Field> {
    let mut fields = vec![
        Field::new("dt", "DocType", "Link")
            .options("DocType")
            .reqd(),
    ];
    fields.extend(data(&["label", "fieldname", "insert_after"]));
    fields.push(Field::new("fieldtype", "Field Type", "Data").default("Data"));
    fields.push(Field::new("options", "Options", "Small Text"));
    fields.push(Field::new("default", "Default", "Small Text"));
    fields.push(Field::new("length", "Length", "Int"));
    fields.push(Field::new("precision", "Precision", "Data").default(""));
    fields.extend(check(CUSTOM_FIELD_FLAGS));
    fields
}

/// Flags of a `Custom Field` document, all 0 unless sent.
const CUSTOM_FIELD_FLAGS: &[&str] = &[
    "is_system_generated",
    "hide_seconds",
    "hide_days",
    "sort_options",
    "fetch_if_empty",
    "collapsible",
    "non_negative",
    "reqd",
    "unique",
    "is_virtual",
    "read_only",
    "ignore_user_permissions",
    "hidden",
    "print_hide",
    "print_hide_if_no_value",
    "no_copy",
    "allow_on_submit",
    "in_list_view",
    "in_standard_filter",
    "in_global_search",
    "in_preview",
    "bold",
    "report_hide",
    "search_index",
    "allow_in_quick_entry",
    "ignore_xss_filter",
    "translatable",
    "hide_border",
    "show_dashboard",
    "permlevel",
    "columns",
];

/// The System Settings single, as a fresh US site holds it.
pub(crate) fn system_settings(modified: &str) -> Map<String, Value> {
    let mut m: Map<String, Value> = serde_json::from_str(
        r####"{
        "name": "System Settings", "owner": "Administrator", 
        "modified_by": "Administrator", "docstatus": 0, "idx": "0", "app_name": "ERPNext",
        "country": "United States", "language": "en", "time_zone": "UTC", "currency": "USD",
        "enable_onboarding": 1, "setup_complete": 1, "disable_document_sharing": 0,
        "date_format": "mm-dd-yyyy", "time_format": "HH:mm:ss", "number_format": "#,###.##",
        "use_number_format_from_currency": 0, "first_day_of_the_week": "Sunday",
        "float_precision": "3", "currency_precision": "", "rounding_method": "Banker's Rounding",
        "apply_strict_user_permissions": 0, "allow_older_web_view_links": 0,
        "session_expiry": "170:00", "document_share_key_expiry": 30, "deny_multiple_sessions": 0,
        "disable_user_pass_login": 0, "max_signups_allowed_per_hour": 300,
        "allow_login_using_mobile_number": 0, "allow_login_using_user_name": 0,
        "login_with_email_link": 1, "login_with_email_link_expiry": 10,
        "rate_limit_email_link_login": 0, "allow_consecutive_login_attempts": 10,
        "allow_login_after_fail": 60, "enable_two_factor_auth": 0,
        "bypass_2fa_for_retricted_ip_users": 0, "bypass_restrict_ip_check_if_2fa_enabled": 0,
        "two_factor_method": "OTP App", "lifespan_qrcode_image": 0,
        "otp_issuer_name": "Frappe Framework", "logout_on_password_reset": 1,
        "force_user_to_reset_password": 0, "reset_password_link_expiry_duration": "1200",
        "password_reset_limit": 3, "enable_password_policy": 1, "minimum_password_score": "2",
        "email_retry_limit": 3, "disable_standard_email_footer": 0,
        "hide_footer_in_auto_email_reports": 0, "attach_view_link": 1,
        "store_attached_pdf_document": 1, "max_file_size": 0, "allow_guests_to_upload_files": 0,
        "force_web_capture_mode_for_uploads": 0, "strip_exif_metadata_from_uploaded_images": 1,
        "delete_background_exported_reports_after": 48, "disable_system_update_notification": 0,
        "disable_change_log_notification": 0, "backup_limit": 3, "encrypt_backup": 0,
        "max_auto_email_report_per_user": 20, "max_report_rows": 100000, "enable_scheduler": 1,
        "dormant_days": 4, "allow_error_traceback": 1, "enable_telemetry": 0,
        "link_field_results_limit": 10, "show_absolute_datetime_in_timeline": 0,
        "log_api_requests": 0
    }"####,
    )
    .expect("the literal above is valid JSON");
    m.insert("modified".into(), Value::String(modified.into()));
    m
}

/// Top-level keys of a `DocType` document and their defaults.
pub(crate) fn doctype_defaults() -> Value {
    literal(
        r#"{
        "issingle": 0, "is_virtual": 0, "is_tree": 0, "istable": 0, "editable_grid": 1,
        "track_changes": 0, "module": "Custom", "autoname": "", "naming_rule": "",
        "title_field": "", "sort_field": "modified", "sort_order": "DESC", "read_only": 0,
        "in_create": 0, "allow_copy": 0, "allow_rename": 1, "allow_import": 0, "hide_toolbar": 0,
        "track_seen": 0, "max_attachments": 0, "document_type": "", "engine": "InnoDB",
        "is_submittable": 0, "show_name_in_global_search": 0, "custom": 1, "beta": 0,
        "has_web_view": 0, "allow_guest_to_view": 0, "email_append_to": 0,
        "show_title_field_in_link": 0, "translated_doctype": 0, "is_calendar_and_gantt": 0,
        "quick_entry": 0, "grid_page_length": 50, "rows_threshold_for_grid_search": 20,
        "track_views": 0, "queue_in_background": 0, "allow_events_in_timeline": 0,
        "allow_auto_repeat": 0, "make_attachments_public": 0, "force_re_route_to_default_view": 0,
        "show_preview_popup": 0, "protect_attached_files": 0, "index_web_pages_for_search": 1,
        "row_format": "Dynamic"
    }"#,
    )
}

/// Keys of a `DocField` row and their defaults.
pub(crate) fn docfield_defaults() -> Value {
    literal(
        r#"{
        "fieldname": "", "label": "", "fieldtype": "Data", "search_index": 0, "show_dashboard": 0,
        "hidden": 0, "set_only_once": 0, "allow_in_quick_entry": 0, "print_hide": 0,
        "report_hide": 0, "reqd": 0, "bold": 0, "in_global_search": 0, "collapsible": 0,
        "unique": 0, "no_copy": 0, "allow_on_submit": 0, "permlevel": 0,
        "ignore_user_permissions": 0, "columns": 0, "in_list_view": 0, "fetch_if_empty": 0,
        "in_filter": 0, "remember_last_selected_value": 0, "ignore_xss_filter": 0,
        "print_hide_if_no_value": 0, "allow_bulk_edit": 0, "in_standard_filter": 0,
        "in_preview": 0, "read_only": 0, "precision": "", "length": 0, "translatable": 0,
        "hide_border": 0, "hide_days": 0, "hide_seconds": 0, "non_negative": 0, "is_virtual": 0,
        "sort_options": 0, "show_on_timeline": 0, "make_attachment_public": 0
    }"#,
    )
}

/// Keys of a `DocPerm` row and their defaults.
pub(crate) fn docperm_defaults() -> Value {
    literal(
        r#"{
        "permlevel": 0, "role": "", "read": 0, "write": 0, "create": 0, "submit": 0, "cancel": 0,
        "delete": 0, "amend": 0, "report": 0, "export": 0, "import": 0, "share": 0, "print": 0,
        "email": 0, "if_owner": 0, "select": 0
    }"#,
    )
}

fn literal(s: &str) -> Value {
    serde_json::from_str(s).expect("the literals in this file are valid JSON")
}
