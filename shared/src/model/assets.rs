//! Customers, service locations, equipment, subscriptions and tags.

use std::net::Ipv4Addr;

use chrono::NaiveDate;

use super::{
    Email, Entity, GeoPoint, MacAddr, ModelError, Money, Name, OltPort, Phone, PostalCode, Reader,
    Serial, Vlan, ensure_collections, put_item,
};
use crate::ids::{CustomerId, DocId, LocationId, TagId};
use crate::record::EntityKind;
use crate::record::{Policy::*, Record, Scalar, Schema, Writers::*, c, f};

str_enum!(
    /// Individual or company, as ERPNext's `customer_type`.
    CustomerKind { Individual => "Individual", Company => "Company" }
);
str_enum!(
    /// The customer's language for SMS and documents.
    Language { Fr => "fr", En => "en" }
);

/// A customer (ERPNext `Customer`). Mostly read-only in the field.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub erp_name: Option<String>,
    pub name: Name,
    pub kind: CustomerKind,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub language: Language,
    pub stripe_id: Option<String>,
    pub is_commercial: bool,
    pub ppa_enabled: bool,
}

impl Entity for Customer {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Customer,
        fields: &[
            f("name", OfficeWins, Office),
            f("kind", OfficeWins, Office),
            f("phone", OfficeWins, Office),
            f("email", OfficeWins, Office),
            f("language", OfficeWins, Office),
            f("stripe_id", OfficeWins, Office),
            f("is_commercial", OfficeWins, Office),
            f("ppa_enabled", OfficeWins, Office),
        ],
        collections: &[],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set("name", Scalar::str(self.name.as_str()));
        r.set("kind", Scalar::str(self.kind.as_str()));
        r.set(
            "phone",
            Scalar::opt_str(self.phone.as_ref().map(Phone::as_str)),
        );
        r.set(
            "email",
            Scalar::opt_str(self.email.as_ref().map(Email::as_str)),
        );
        r.set("language", Scalar::str(self.language.as_str()));
        r.set("stripe_id", Scalar::opt_str(self.stripe_id.clone()));
        r.set("is_commercial", Scalar::Bool(self.is_commercial));
        r.set("ppa_enabled", Scalar::Bool(self.ppa_enabled));
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        Ok(Self {
            id: CustomerId(id),
            erp_name: r.opt_text("erp_name")?,
            name: r.parse("name")?,
            kind: r.parse("kind")?,
            phone: r.opt_parse("phone")?,
            email: r.opt_parse("email")?,
            language: r.opt_parse("language")?.unwrap_or(Language::Fr),
            stripe_id: r.opt_text("stripe_id")?,
            is_commercial: r.bool("is_commercial")?,
            ppa_enabled: r.bool("ppa_enabled")?,
        })
    }
}

/// A civic address in Québec or elsewhere in Canada.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub line1: Name,
    pub city: Name,
    /// Two-letter province code, e.g. `QC`.
    pub province: String,
    pub postal_code: PostalCode,
}

impl Address {
    pub fn parse(
        line1: &str,
        city: &str,
        province: &str,
        postal: &str,
    ) -> Result<Self, ModelError> {
        let p = province.trim().to_ascii_uppercase();
        const PROVINCES: [&str; 13] = [
            "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT",
        ];
        if !PROVINCES.contains(&p.as_str()) {
            return Err(ModelError::new(
                "province",
                format!("`{province}` is not a Canadian province code"),
            ));
        }
        Ok(Self {
            line1: Name::parse(line1).map_err(|e| ModelError::new("address_line1", e))?,
            city: Name::parse(city).map_err(|e| ModelError::new("city", e))?,
            province: p,
            postal_code: PostalCode::parse(postal)
                .map_err(|e| ModelError::new("postal_code", e))?,
        })
    }
    /// One line for lists and search.
    pub fn one_line(&self) -> String {
        format!(
            "{}, {} {} {}",
            self.line1, self.city, self.province, self.postal_code
        )
    }
}

/// A contact person at a location (kept as an append-only collection).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub key: String,
    pub name: Name,
    pub phone: Option<Phone>,
    pub role: Option<String>,
}

/// A service location, `LOC-#####` (custom doctype `Service Location`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceLocation {
    pub id: LocationId,
    pub erp_name: Option<String>,
    pub customer: CustomerId,
    pub address: Address,
    pub gps: Option<GeoPoint>,
    pub olt_port: Option<OltPort>,
    pub vlan: Option<Vlan>,
    pub network_notes: String,
    pub contacts: Vec<Contact>,
}

impl Entity for ServiceLocation {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Location,
        fields: &[
            f("customer", OfficeWins, Office),
            f("address_line1", OfficeWins, Office),
            f("city", OfficeWins, Office),
            f("province", OfficeWins, Office),
            f("postal_code", OfficeWins, Office),
            // A technician on site knows where the building really is.
            f("gps", DeviceWins, Field),
            f("olt_port", OfficeWins, Office),
            f("vlan", OfficeWins, Office),
            f("network_notes", DeviceWins, Field),
        ],
        collections: &[c(
            "contacts",
            DeviceWins,
            Field,
            &["name", "phone", "role"],
            &["name", "phone", "role"],
        )],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set("customer", Scalar::str(self.customer.to_string()));
        r.set("address_line1", Scalar::str(self.address.line1.as_str()));
        r.set("city", Scalar::str(self.address.city.as_str()));
        r.set("province", Scalar::str(&self.address.province));
        r.set(
            "postal_code",
            Scalar::str(self.address.postal_code.as_str()),
        );
        r.set("gps", Scalar::opt_str(self.gps.map(|g| g.to_string())));
        r.set(
            "olt_port",
            Scalar::opt_str(self.olt_port.as_ref().map(OltPort::as_str)),
        );
        r.set(
            "vlan",
            self.vlan
                .map_or(Scalar::Null, |v| Scalar::Int(v.get().into())),
        );
        r.set("network_notes", Scalar::str(&self.network_notes));
        ensure_collections(r, &["contacts"]);
        for ct in &self.contacts {
            put_item(
                r,
                "contacts",
                &ct.key,
                &[
                    ("name", Scalar::str(ct.name.as_str())),
                    (
                        "phone",
                        Scalar::opt_str(ct.phone.as_ref().map(Phone::as_str)),
                    ),
                    ("role", Scalar::opt_str(ct.role.clone())),
                ],
            );
        }
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        Ok(Self {
            id: LocationId(id),
            erp_name: r.opt_text("erp_name")?,
            customer: r.parse("customer")?,
            address: Address::parse(
                &r.text("address_line1")?,
                &r.text("city")?,
                &r.text("province")?,
                &r.text("postal_code")?,
            )?,
            gps: r.opt_parse("gps")?,
            olt_port: r.opt_parse("olt_port")?,
            vlan: r
                .opt_int("vlan")?
                .map(Vlan::new)
                .transpose()
                .map_err(|e| ModelError::new("vlan", e))?,
            network_notes: r.text_or_empty("network_notes")?,
            contacts: r.items("contacts", |key, it| {
                Ok(Contact {
                    key: key.to_owned(),
                    name: it.parse("name")?,
                    phone: it.opt_parse("phone")?,
                    role: it.opt_text("role")?,
                })
            })?,
        })
    }
}

str_enum!(
    /// What a piece of equipment is.
    EquipmentType { Ont => "ONT", Router => "Router", Switch => "Switch", Ap => "AP", Decodeur => "Décodeur" }
);
str_enum!(
    /// Where a piece of equipment is in its life.
    EquipmentStatus {
        Active => "Active", Inactive => "Inactive", EnStock => "En stock",
        Defectueux => "Défectueux", Retourne => "Retourné",
    }
);

/// A piece of service equipment, `EQP-#####`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEquipment {
    pub id: crate::ids::EquipmentId,
    pub erp_name: Option<String>,
    pub location: Option<LocationId>,
    pub kind: EquipmentType,
    pub serial: Serial,
    pub mac: Option<MacAddr>,
    pub management_ip: Option<Ipv4Addr>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub status: EquipmentStatus,
    /// Another record with the same serial or MAC, set by the server when two met (two
    /// technicians registering one unit offline); the office decides whether it is the same
    /// unit (kept) or not (cleared).
    pub duplicate_of: Option<crate::ids::EquipmentId>,
}

impl Entity for ServiceEquipment {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Equipment,
        fields: &[
            // Technicians install, swap and return equipment: location and status are theirs.
            f("location", DeviceWins, Field),
            f("kind", DeviceWins, Field),
            f("serial", DeviceWins, Field),
            f("mac", DeviceWins, Field),
            f("management_ip", OfficeWins, Office),
            f("model", DeviceWins, Field),
            f("firmware", DeviceWins, Field),
            f("status", DeviceWins, Field),
            f("duplicate_of", OfficeWins, Office),
        ],
        collections: &[],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set(
            "location",
            Scalar::opt_str(self.location.map(|l| l.to_string())),
        );
        r.set("kind", Scalar::str(self.kind.as_str()));
        r.set("serial", Scalar::str(self.serial.as_str()));
        r.set("mac", Scalar::opt_str(self.mac.map(|m| m.to_string())));
        r.set(
            "management_ip",
            Scalar::opt_str(self.management_ip.map(|i| i.to_string())),
        );
        r.set("model", Scalar::opt_str(self.model.clone()));
        r.set("firmware", Scalar::opt_str(self.firmware.clone()));
        r.set("status", Scalar::str(self.status.as_str()));
        r.set(
            "duplicate_of",
            Scalar::opt_str(self.duplicate_of.map(|d| d.to_string())),
        );
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        Ok(Self {
            id: crate::ids::EquipmentId(id),
            erp_name: r.opt_text("erp_name")?,
            location: r.opt_parse("location")?,
            kind: r.parse("kind")?,
            serial: r.parse("serial")?,
            mac: r.opt_parse("mac")?,
            management_ip: r.opt_parse("management_ip")?,
            model: r.opt_text("model")?,
            firmware: r.opt_text("firmware")?,
            status: r.parse("status")?,
            duplicate_of: r.opt_parse("duplicate_of")?,
        })
    }
}

str_enum!(
    /// What a subscription provides.
    Plan { Internet => "Internet", Iptv => "IPTV", Voip => "VoIP", Bundle => "Bundle" }
);
str_enum!(
    /// pending → active → suspended → cancelled.
    SubscriptionStatus { Pending => "pending", Active => "active", Suspended => "suspended", Cancelled => "cancelled" }
);

/// A service subscription, `SUB-#####`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSubscription {
    pub id: crate::ids::SubscriptionId,
    pub erp_name: Option<String>,
    pub customer: CustomerId,
    pub location: LocationId,
    pub plan: Plan,
    pub status: SubscriptionStatus,
    pub monthly_price: Money,
    pub start_date: NaiveDate,
}

impl Entity for ServiceSubscription {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Subscription,
        fields: &[
            f("customer", OfficeWins, Office),
            f("location", OfficeWins, Office),
            f("plan", OfficeWins, Office),
            f("status", OfficeWins, Office),
            f("monthly_price_cents", OfficeWins, Office),
            f("start_date", OfficeWins, Office),
        ],
        collections: &[],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set("customer", Scalar::str(self.customer.to_string()));
        r.set("location", Scalar::str(self.location.to_string()));
        r.set("plan", Scalar::str(self.plan.as_str()));
        r.set("status", Scalar::str(self.status.as_str()));
        r.set(
            "monthly_price_cents",
            Scalar::Int(self.monthly_price.cents()),
        );
        r.set("start_date", Scalar::str(self.start_date.to_string()));
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        Ok(Self {
            id: crate::ids::SubscriptionId(id),
            erp_name: r.opt_text("erp_name")?,
            customer: r.parse("customer")?,
            location: r.parse("location")?,
            plan: r.parse("plan")?,
            status: r.parse("status")?,
            monthly_price: Money::from_cents(r.int("monthly_price_cents")?)
                .map_err(|e| ModelError::new("monthly_price_cents", e))?,
            start_date: r.parse("start_date")?,
        })
    }
}

/// A skill tag (ERPNext `Dispatch Tag`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub id: TagId,
    pub erp_name: Option<String>,
    pub label: Name,
    pub category: Option<String>,
}

impl Entity for Tag {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Tag,
        fields: &[
            f("label", OfficeWins, Office),
            f("category", OfficeWins, Office),
        ],
        collections: &[],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set("label", Scalar::str(self.label.as_str()));
        r.set("category", Scalar::opt_str(self.category.clone()));
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        Ok(Self {
            id: TagId(id),
            erp_name: r.opt_text("erp_name")?,
            label: r.parse("label")?,
            category: r.opt_text("category")?,
        })
    }
}
