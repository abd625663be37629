//! French (default) and English strings. Every message is a variant of [`Msg`], and [`t`] matches
//! on both, so a message without a translation does not compile.

use serde::{Deserialize, Serialize};

/// The UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }
    pub fn from_code(s: &str) -> Self {
        if s.starts_with("en") {
            Lang::En
        } else {
            Lang::Fr
        }
    }
    pub fn other(self) -> Self {
        match self {
            Lang::Fr => Lang::En,
            Lang::En => Lang::Fr,
        }
    }
}

/// Every fixed string the UI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    AppName,
    Server,
    LoginLink,
    LoginHelp,
    LogIn,
    LogOut,
    MyJobs,
    Board,
    Conflicts,
    Today,
    NoJobs,
    Back,
    Customer,
    Location,
    Contacts,
    Equipment,
    Subscriptions,
    History,
    Notes,
    AddNote,
    Checklist,
    Materials,
    AddMaterial,
    Quantity,
    Unit,
    Photos,
    AddPhoto,
    Uploaded,
    WaitingUpload,
    Signature,
    Signer,
    Sign,
    Clear,
    CheckIn,
    CheckedIn,
    Latitude,
    Longitude,
    TimeOnSite,
    ChangeStatus,
    Call,
    Directions,
    TypePosition,
    ConfirmStatus,
    StillOpen,
    NoSignature,
    Confirm,
    ScanOrType,
    Install,
    Swap,
    Return,
    Replaces,
    Description,
    SyncNow,
    Syncing,
    LastSync,
    Never,
    Pending,
    OnDevice,
    Online,
    Day,
    Week,
    Previous,
    Next,
    Unassigned,
    NothingUnassigned,
    Legend,
    NewJob,
    Edit,
    Save,
    Cancel,
    Title,
    Date,
    Start,
    Duration,
    Priority,
    Suggest,
    Assign,
    Unassign,
    Eligible,
    NotEligible,
    KeepValue,
    NoConflicts,
    WrittenBy,
    Shown,
    Overridden,
    OverriddenHelp,
    Kept,
    Acknowledge,
    Technician,
    BoardHelp,
    Map,
    Minutes,
    Error,
    Dismiss,
    Language,
    PhotosWaiting,
    Rejected,
    Network,
    NetLoading,
    NetOffline,
    NetSnapshot,
    NetLastInform,
    NetUptime,
    NetOptical,
    NetWan,
    NetWanDown,
    NetHosts,
    NetGateway,
    NetRefresh,
    NetReboot,
    NetRebootConfirm,
    NetRebootHelp,
    NetLine,
    NetLineStale,
    OnuOnline,
    OnuLos,
    OnuDyingGasp,
    OnuOffline,
    OnuOther,
    Outages,
    PortOutage,
    CustomerFault,
    OltUnreachable,
    OnusDown,
    JobsAffected,
    NoJobsAffected,
    MonitorDown,
    Filters,
    FilterSearch,
    AllTowns,
    AllKinds,
    AllSkills,
    ClearFilters,
    HiddenByFilter,
    NotReported,
    NetNoBox,
    NetNoAcs,
    NetNotYours,
    LevelOk,
    LevelWarning,
    LevelCritical,
    NetDone,
    NetRebooting,
    NetQueued,
    NetFaulted,
    NetUnreachable,
}

/// The text of `m` in `lang`.
pub fn t(lang: Lang, m: Msg) -> &'static str {
    use Msg::*;
    match lang {
        Lang::Fr => match m {
            AppName => "Terrain",
            Server => "Adresse du serveur",
            LoginLink => "Lien de connexion ou jeton",
            LoginHelp => {
                "Collez le lien reçu par texto ou courriel (fsm://login?token=…), ou un jeton du bureau."
            }
            LogIn => "Se connecter",
            LogOut => "Se déconnecter",
            MyJobs => "Mes travaux",
            Board => "Tableau",
            Conflicts => "Conflits",
            Today => "Aujourd’hui",
            NoJobs => "Aucun travail prévu.",
            Back => "Retour",
            Customer => "Client",
            Location => "Adresse de service",
            Contacts => "Contacts",
            Equipment => "Équipement",
            Subscriptions => "Abonnements",
            History => "Historique",
            Notes => "Notes",
            AddNote => "Ajouter la note",
            Checklist => "Liste de vérification",
            Materials => "Matériel utilisé",
            AddMaterial => "Ajouter",
            Quantity => "Quantité",
            Unit => "Unité",
            Photos => "Photos",
            AddPhoto => "Ajouter une photo",
            Uploaded => "envoyée",
            WaitingUpload => "en attente d’envoi",
            Signature => "Signature",
            Signer => "Nom du signataire",
            Sign => "Enregistrer la signature",
            Clear => "Effacer",
            CheckIn => "Arrivée sur place",
            CheckedIn => "Arrivé",
            Latitude => "Latitude",
            Longitude => "Longitude",
            TimeOnSite => "Temps sur place",
            ChangeStatus => "Changer le statut",
            Call => "Appeler",
            Directions => "Itinéraire",
            TypePosition => "Saisir la position à la main",
            ConfirmStatus => "Confirmer le statut",
            StillOpen => "Pas encore coché",
            NoSignature => "Pas de signature du client",
            Confirm => "Confirmer",
            ScanOrType => "Numéro de série ou MAC",
            Install => "Installer",
            Swap => "Remplacer",
            Return => "Retourner",
            Replaces => "remplace",
            Description => "Description",
            SyncNow => "Synchroniser",
            Syncing => "Synchronisation…",
            LastSync => "Dernière synchronisation",
            Never => "jamais",
            Pending => "en attente",
            OnDevice => "Sur l’appareil",
            Online => "En ligne",
            Day => "Jour",
            Week => "Semaine",
            Previous => "Précédent",
            Next => "Suivant",
            Unassigned => "Non affectés",
            NothingUnassigned => "Tout est affecté",
            Legend => "Légende",
            NewJob => "Nouvelle intervention",
            Edit => "Modifier",
            Save => "Enregistrer",
            Cancel => "Annuler",
            Title => "Titre",
            Date => "Date",
            Start => "Début",
            Duration => "Durée (min)",
            Priority => "Priorité",
            Suggest => "Suggestions",
            Assign => "Affecter",
            Unassign => "Retirer l’affectation",
            Eligible => "admissible",
            NotEligible => "non admissible",
            KeepValue => "Garder",
            NoConflicts => "Aucun conflit.",
            WrittenBy => "par",
            Shown => "affiché",
            Overridden => "Valeurs remplacées",
            OverriddenHelp => {
                "La règle du champ a gardé une valeur au lieu d’une autre : rien à décider, mais celui dont la valeur a été remplacée le voit ici."
            }
            Kept => "gardé",
            Acknowledge => "Vu",
            Technician => "Technicien",
            BoardHelp => {
                "Glissez un travail vers un technicien et une heure, ou sélectionnez-le puis ←→ heure/jour, ↑↓ technicien, Entrée pour confirmer, Échap pour annuler."
            }
            Map => "Carte",
            Minutes => "min",
            Error => "Erreur",
            Dismiss => "Fermer",
            Language => "English",
            PhotosWaiting => "photos en attente",
            Rejected => "refusées",
            Network => "Réseau",
            NetLoading => "Lecture du boîtier…",
            NetOffline => "Hors ligne — dernier relevé",
            NetSnapshot => "L'ACS ne répond pas — dernier relevé",
            NetLastInform => "Dernier contact du boîtier",
            NetUptime => "Allumé depuis",
            NetOptical => "Fibre",
            NetWan => "Internet",
            NetWanDown => "aucune connexion active",
            NetHosts => "Appareils connectés",
            NetGateway => "Boîtier principal",
            NetRefresh => "Actualiser",
            NetReboot => "Redémarrer",
            NetRebootConfirm => "Confirmer le redémarrage",
            NetRebootHelp => "La connexion du client sera coupée quelques minutes.",
            NetLine => "Ligne fibre (OLT)",
            NetLineStale => "L’OLT ne répond pas : état du dernier relevé",
            OnuOnline => "En service",
            OnuLos => "Perte de signal (fibre)",
            OnuDyingGasp => "Coupure de courant chez le client",
            OnuOffline => "Hors ligne",
            OnuOther => "En cours d’enregistrement",
            Outages => "Pannes réseau",
            PortOutage => "Panne d’un port PON",
            CustomerFault => "Client sans signal",
            OltUnreachable => "OLT injoignable",
            OnusDown => "ONU hors service",
            JobsAffected => "Travaux touchés",
            NoJobsAffected => "Aucun travail prévu chez ces clients",
            MonitorDown => "Surveillance en alerte",
            Filters => "Filtres",
            FilterSearch => "Client, adresse ou téléphone",
            AllTowns => "Toutes les villes",
            AllKinds => "Tous les types",
            AllSkills => "Toutes les compétences",
            ClearFilters => "Effacer les filtres",
            HiddenByFilter => "masqués par les filtres",
            NotReported => "non communiqué",
            NetNoBox => "L'ACS ne connaît pas ce boîtier (numéro de série ou MAC).",
            NetNoAcs => "Aucun ACS n'est configuré sur le serveur.",
            NetNotYours => "Cet équipement n'est pas sur un de vos travaux.",
            LevelOk => "bon",
            LevelWarning => "limite",
            LevelCritical => "hors norme",
            NetDone => "Relu à l'instant.",
            NetRebooting => "Le boîtier redémarre.",
            NetQueued => "Le boîtier n'a pas répondu : ce sera fait à son prochain contact.",
            NetFaulted => "Le boîtier a refusé la demande.",
            NetUnreachable => "Boîtier injoignable : rien n'a été envoyé.",
        },
        Lang::En => match m {
            AppName => "Field",
            Server => "Server address",
            LoginLink => "Login link or token",
            LoginHelp => {
                "Paste the link you got by text or email (fsm://login?token=…), or an office token."
            }
            LogIn => "Log in",
            LogOut => "Log out",
            MyJobs => "My jobs",
            Board => "Board",
            Conflicts => "Conflicts",
            Today => "Today",
            NoJobs => "No jobs planned.",
            Back => "Back",
            Customer => "Customer",
            Location => "Service location",
            Contacts => "Contacts",
            Equipment => "Equipment",
            Subscriptions => "Subscriptions",
            History => "History",
            Notes => "Notes",
            AddNote => "Add note",
            Checklist => "Checklist",
            Materials => "Materials used",
            AddMaterial => "Add",
            Quantity => "Quantity",
            Unit => "Unit",
            Photos => "Photos",
            AddPhoto => "Add a photo",
            Uploaded => "uploaded",
            WaitingUpload => "waiting to upload",
            Signature => "Signature",
            Signer => "Signer's name",
            Sign => "Save signature",
            Clear => "Clear",
            CheckIn => "Check in",
            CheckedIn => "Checked in",
            Latitude => "Latitude",
            Longitude => "Longitude",
            TimeOnSite => "Time on site",
            ChangeStatus => "Change status",
            Call => "Call",
            Directions => "Directions",
            TypePosition => "Type the position by hand",
            ConfirmStatus => "Confirm the status",
            StillOpen => "Not ticked yet",
            NoSignature => "No customer signature",
            Confirm => "Confirm",
            ScanOrType => "Serial number or MAC",
            Install => "Install",
            Swap => "Swap",
            Return => "Return",
            Replaces => "replaces",
            Description => "Description",
            SyncNow => "Sync now",
            Syncing => "Syncing…",
            LastSync => "Last sync",
            Never => "never",
            Pending => "pending",
            OnDevice => "On this device",
            Online => "Online",
            Day => "Day",
            Week => "Week",
            Previous => "Previous",
            Next => "Next",
            Unassigned => "Unassigned",
            NothingUnassigned => "Everything is assigned",
            Legend => "Legend",
            NewJob => "New job",
            Edit => "Edit",
            Save => "Save",
            Cancel => "Cancel",
            Title => "Title",
            Date => "Date",
            Start => "Start",
            Duration => "Duration (min)",
            Priority => "Priority",
            Suggest => "Suggestions",
            Assign => "Assign",
            Unassign => "Unassign",
            Eligible => "eligible",
            NotEligible => "not eligible",
            KeepValue => "Keep",
            NoConflicts => "No conflicts.",
            WrittenBy => "by",
            Shown => "shown",
            Overridden => "Replaced values",
            OverriddenHelp => {
                "The field's rule kept one value over another: nothing to decide, but whoever's value was replaced sees it here."
            }
            Kept => "kept",
            Acknowledge => "Seen",
            Technician => "Technician",
            BoardHelp => {
                "Drag a job onto a technician and hour, or select it then ←→ hour/day, ↑↓ technician, Enter to confirm, Esc to cancel."
            }
            Map => "Map",
            Minutes => "min",
            Error => "Error",
            Dismiss => "Dismiss",
            Language => "Français",
            PhotosWaiting => "photos waiting",
            Rejected => "refused",
            Network => "Network",
            NetLoading => "Reading the box…",
            NetOffline => "Offline — last reading",
            NetSnapshot => "The ACS does not answer — last reading",
            NetLastInform => "Box last called in",
            NetUptime => "Up for",
            NetOptical => "Fibre",
            NetWan => "Internet",
            NetWanDown => "no active connection",
            NetHosts => "Connected devices",
            NetGateway => "Main box",
            NetRefresh => "Refresh",
            NetReboot => "Reboot",
            NetRebootConfirm => "Confirm the reboot",
            NetRebootHelp => "The customer's connection will drop for a few minutes.",
            NetLine => "Fibre line (OLT)",
            NetLineStale => "The OLT does not answer: state as last read",
            OnuOnline => "In service",
            OnuLos => "Loss of signal (fibre)",
            OnuDyingGasp => "Power cut at the customer's",
            OnuOffline => "Offline",
            OnuOther => "Registering",
            Outages => "Network outages",
            PortOutage => "PON port outage",
            CustomerFault => "Customer without signal",
            OltUnreachable => "OLT unreachable",
            OnusDown => "ONUs down",
            JobsAffected => "Jobs affected",
            NoJobsAffected => "No job planned at these customers",
            MonitorDown => "Monitor alerting",
            Filters => "Filters",
            FilterSearch => "Customer, address or phone",
            AllTowns => "All towns",
            AllKinds => "All types",
            AllSkills => "All skills",
            ClearFilters => "Clear filters",
            HiddenByFilter => "hidden by the filters",
            NotReported => "not reported",
            NetNoBox => "The ACS does not know this box (serial or MAC).",
            NetNoAcs => "No ACS is configured on the server.",
            NetNotYours => "This equipment is not on one of your jobs.",
            LevelOk => "good",
            LevelWarning => "borderline",
            LevelCritical => "out of range",
            NetDone => "Read just now.",
            NetRebooting => "The box is restarting.",
            NetQueued => "The box did not answer: it will be done at its next call.",
            NetFaulted => "The box refused the request.",
            NetUnreachable => "The box cannot be reached: nothing was sent.",
        },
    }
}

/// A job status in words.
pub fn status(lang: Lang, s: &str) -> &'static str {
    match (lang, s) {
        (Lang::Fr, "open") => "Ouvert",
        (Lang::Fr, "scheduled") => "Planifié",
        (Lang::Fr, "en_route") => "En route",
        (Lang::Fr, "on_site") => "Sur place",
        (Lang::Fr, "completed") => "Terminé",
        (Lang::Fr, "could_not_complete") => "Non terminé",
        (Lang::Fr, "cancelled") => "Annulé",
        (Lang::En, "open") => "Open",
        (Lang::En, "scheduled") => "Scheduled",
        (Lang::En, "en_route") => "En route",
        (Lang::En, "on_site") => "On site",
        (Lang::En, "completed") => "Completed",
        (Lang::En, "could_not_complete") => "Could not complete",
        (Lang::En, "cancelled") => "Cancelled",
        _ => "?",
    }
}

/// Who wrote a value, in words: ERPNext's office, the server, or a person's role.
pub fn author(lang: Lang, a: &shared::ids::Author) -> &'static str {
    use shared::ids::Role;
    if a.is_erpnext() {
        return match lang {
            Lang::Fr => "ERPNext (bureau)",
            Lang::En => "ERPNext (office)",
        };
    }
    match (lang, a.role) {
        (Lang::Fr, Role::Technician) => "Technicien",
        (Lang::Fr, Role::Dispatcher) => "Répartiteur",
        (Lang::Fr, Role::Admin) => "Administrateur",
        (Lang::Fr, Role::Server) => "Serveur",
        (Lang::En, Role::Technician) => "Technician",
        (Lang::En, Role::Dispatcher) => "Dispatcher",
        (Lang::En, Role::Admin) => "Admin",
        (Lang::En, Role::Server) => "Server",
    }
}

/// A priority in words.
pub fn priority(lang: Lang, p: &str) -> &'static str {
    match (lang, p) {
        (Lang::Fr, "low") => "Basse",
        (Lang::Fr, "normal") => "Normale",
        (Lang::Fr, "high") => "Haute",
        (Lang::Fr, "urgent") => "Urgente",
        (Lang::En, "low") => "Low",
        (Lang::En, "normal") => "Normal",
        (Lang::En, "high") => "High",
        (Lang::En, "urgent") => "Urgent",
        _ => "?",
    }
}

/// A number as French writes it: a decimal comma (« 5,8 »), no trailing zeros.
pub fn decimal_fr(x: f64) -> String {
    let text = format!("{}", (x * 10.0).round() / 10.0);
    text.replace('.', ",")
}

/// A dispatch reason in words.
pub fn reason(lang: Lang, r: &shared::dispatch::Reason) -> String {
    use shared::dispatch::Reason::*;
    match (lang, r) {
        (Lang::Fr, MissingTag { tag }) => format!("compétence manquante : {tag}"),
        (Lang::En, MissingTag { tag }) => format!("missing skill: {tag}"),
        (Lang::Fr, LevelTooLow { tag, has, needs }) => {
            format!("niveau {has} en {tag}, {needs} requis")
        }
        (Lang::En, LevelTooLow { tag, has, needs }) => {
            format!("level {has} in {tag}, needs {needs}")
        }
        (Lang::Fr, NotWorking) => "ne travaille pas à cette heure".into(),
        (Lang::En, NotWorking) => "not working then".into(),
        (Lang::Fr, Absent) => "absent ce jour-là".into(),
        (Lang::En, Absent) => "absent that day".into(),
        (Lang::Fr, Busy { with }) => format!("occupé : {with}"),
        (Lang::En, Busy { with }) => format!("busy: {with}"),
        (Lang::Fr, SkillSurplus(n)) => format!("surplus de compétence {n}"),
        (Lang::En, SkillSurplus(n)) => format!("skill surplus {n}"),
        (Lang::Fr, TravelKm(km)) => format!("{} km de route", decimal_fr(*km)),
        (Lang::En, TravelKm(km)) => format!("{km} km away"),
        (Lang::Fr, NoSlotTime) => "pas d’heure fixée".into(),
        (Lang::En, NoSlotTime) => "no start time set".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// English leftovers and anglicisms a French reader trips on; each with what to write instead.
    const NOT_FRENCH: &[(&str, &str)] = &[
        ("Assigner", "Affecter"),
        ("assigné", "affecté"),
        ("Désassigner", "Retirer l’affectation"),
        ("complété", "terminé"),
        ("synchro ", "synchronisation"),
        ("Nouveau travail", "Nouvelle intervention"),
        ("canceller", "annuler"),
        ("céduler", "planifier"),
        ("cédulé", "planifié"),
        ("email", "courriel"),
        ("e-mail", "courriel"),
        ("checker", "vérifier"),
        ("loader", "charger"),
        ("Loading", "Chargement"),
        ("Save", "Enregistrer"),
        ("Cancel", "Annuler"),
        ("Error", "Erreur"),
        ("Settings", "Paramètres"),
        ("Search", "Rechercher"),
        ("Submit", "Envoyer"),
        ("Delete", "Supprimer"),
        ("Offline", "Hors ligne"),
        ("server unreachable", "Hors ligne"),
        ("Status", "Statut"),
        ("Job", "Intervention"),
    ];

    /// Every string literal on the French side of this file: the French half of `t` and every
    /// `(Lang::Fr, …)` or `Lang::Fr =>` arm elsewhere.
    fn french_literals() -> Vec<String> {
        let src = include_str!("i18n.rs");
        let tests = src.find("#[cfg(test)]").unwrap_or(src.len());
        let mut out = Vec::new();
        let mut in_fr = false;
        for line in src[..tests].lines() {
            let l = line.trim_start();
            if l.starts_with("Lang::Fr => match m {") {
                in_fr = true;
            } else if l.starts_with("Lang::En => match m {") {
                in_fr = false;
            }
            if in_fr || l.starts_with("(Lang::Fr") || l.starts_with("Lang::Fr =>") {
                let mut rest = l;
                while let Some(i) = rest.find('"') {
                    let after = &rest[i + 1..];
                    let Some(j) = after.find('"') else { break };
                    out.push(after[..j].to_owned());
                    rest = &after[j + 1..];
                }
            }
        }
        out
    }

    #[test]
    fn french_strings_read_as_french() {
        let all = french_literals();
        assert!(
            all.len() > 100,
            "the walk found the French strings ({})",
            all.len()
        );
        for text in &all {
            for (bad, good) in NOT_FRENCH {
                assert!(
                    !text.contains(bad),
                    "« {text} » says `{bad}`: write « {good} »"
                );
            }
            // A space (here a narrow no-break one or a plain one) before a colon, as French sets it.
            if let Some(i) = text.find(':')
                && i > 0
                && !text[..i].ends_with(' ')
                && !text[..i].ends_with('\u{202f}')
                && !text[..i].ends_with("fsm")
                && !text.contains("://")
            {
                panic!("« {text} »: a space goes before the colon in French");
            }
        }
        assert_eq!(decimal_fr(5.8), "5,8");
        assert_eq!(decimal_fr(83.3), "83,3");
        assert_eq!(decimal_fr(12.0), "12");
    }

    #[test]
    fn french_is_the_default_and_both_languages_differ_where_words_do() {
        assert_eq!(Lang::default(), Lang::Fr);
        assert_eq!(t(Lang::default(), Msg::MyJobs), "Mes travaux");
        assert_eq!(t(Lang::En, Msg::MyJobs), "My jobs");
        assert_eq!(Lang::from_code("en-CA"), Lang::En);
        assert_eq!(Lang::from_code("fr-CA"), Lang::Fr);
        for s in shared::model::JobStatus::ALL {
            assert_ne!(status(Lang::Fr, s.as_str()), "?", "{s}");
            assert_ne!(status(Lang::En, s.as_str()), "?", "{s}");
        }
        for p in shared::model::Priority::ALL {
            assert_ne!(priority(Lang::Fr, p.as_str()), "?", "{p}");
        }
    }
}

/// How long ago, in words (« il y a 12 min »), from Unix milliseconds.
pub fn ago(lang: Lang, now_ms: i64, then_ms: i64) -> String {
    let min = (now_ms - then_ms).max(0) / 60_000;
    match (lang, min) {
        (Lang::Fr, 0) => "à l’instant".into(),
        (Lang::Fr, 1..=59) => format!("il y a {min} min"),
        (Lang::Fr, 60..=1439) => format!("il y a {} h", min / 60),
        (Lang::Fr, _) => format!("il y a {} j", min / 1440),
        (Lang::En, 0) => "just now".into(),
        (Lang::En, 1..=59) => format!("{min} min ago"),
        (Lang::En, 60..=1439) => format!("{} h ago", min / 60),
        (Lang::En, _) => format!("{} d ago", min / 1440),
    }
}

/// A date `YYYY-MM-DD` as a person says it: « 27 nov. », "Nov 27".
pub fn short_date(lang: Lang, iso: &str) -> String {
    const FR: [&str; 12] = [
        "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
        "déc.",
    ];
    const EN: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = iso.split('-').skip(1);
    let month = parts.next().and_then(|m| m.parse::<usize>().ok());
    let day = parts.next().and_then(|d| d.parse::<u32>().ok());
    match (month.filter(|m| (1..=12).contains(m)), day) {
        (Some(m), Some(d)) => match lang {
            Lang::Fr => format!("{d} {}", FR[m - 1]),
            Lang::En => format!("{} {d}", EN[m - 1]),
        },
        _ => iso.to_owned(),
    }
}

/// What the device holds, said plainly: « Vos travaux du 27 nov. au 14 déc. sont sur
/// l’appareil ».
pub fn coverage(lang: Lang, first: &str, last: &str) -> String {
    let (a, b) = (short_date(lang, first), short_date(lang, last));
    match lang {
        Lang::Fr => format!("Vos travaux du {a} au {b} sont sur l’appareil"),
        Lang::En => format!("Your jobs from {a} to {b} are on this device"),
    }
}

/// The calm offline line, with what waits on the device.
pub fn offline_line(lang: Lang, pending: u64) -> String {
    match (lang, pending) {
        (Lang::Fr, 0) => "Hors ligne — vos changements sont enregistrés sur l’appareil".into(),
        (Lang::Fr, n) => {
            format!("Hors ligne — vos changements sont enregistrés sur l’appareil ({n} en attente)")
        }
        (Lang::En, 0) => "Offline — your changes are saved on this device".into(),
        (Lang::En, n) => format!("Offline — your changes are saved on this device ({n} waiting)"),
    }
}

#[cfg(test)]
mod words {
    use super::*;

    #[test]
    fn times_dates_and_the_offline_line_read_as_people_say_them() {
        let now = 1_764_500_000_000;
        assert_eq!(ago(Lang::Fr, now, now - 12 * 60_000), "il y a 12 min");
        assert_eq!(ago(Lang::Fr, now, now - 3 * 3_600_000), "il y a 3 h");
        assert_eq!(ago(Lang::En, now, now - 20_000), "just now");
        assert_eq!(
            coverage(Lang::Fr, "2026-11-27", "2026-12-14"),
            "Vos travaux du 27 nov. au 14 déc. sont sur l’appareil"
        );
        assert_eq!(short_date(Lang::En, "2026-02-03"), "Feb 3");
        assert_eq!(short_date(Lang::Fr, "not a date"), "not a date");
        assert!(offline_line(Lang::Fr, 3).ends_with("(3 en attente)"));
    }
}

/// A field as the conflict inbox names it: « Statut », not `status`; an item's field with its
/// collection (« Note », « Case cochée »). Unknown fields keep their name.
pub fn field_label(lang: Lang, field: &str) -> String {
    // `notes[<key>].text` → the collection and the item's field.
    let (collection, item_field) = match field.split_once('[') {
        Some((c, rest)) => (Some(c), rest.rsplit_once("].").map(|(_, f)| f)),
        None => (None, None),
    };
    let word = match (lang, collection, item_field, field) {
        (Lang::Fr, None, _, "status") => "Statut",
        (Lang::Fr, None, _, "deleted") => "Suppression",
        (Lang::Fr, None, _, "duplicate_of") => "Doublon d’un autre appareil",
        (Lang::Fr, None, _, "description") => "Description",
        (Lang::Fr, None, _, "title") => "Titre",
        (Lang::Fr, None, _, "priority") => "Priorité",
        (Lang::Fr, None, _, "date") => "Date",
        (Lang::Fr, None, _, "start") => "Heure",
        (Lang::Fr, None, _, "technician") => "Technicien",
        (Lang::Fr, None, _, "signature") => "Signature",
        (Lang::Fr, None, _, "check_in") => "Arrivée sur place",
        (Lang::Fr, Some("notes"), _, _) => "Note",
        (Lang::Fr, Some("checklist"), _, _) => "Case cochée",
        (Lang::Fr, Some("materials"), _, _) => "Matériel",
        (Lang::En, None, _, "status") => "Status",
        (Lang::En, None, _, "deleted") => "Deletion",
        (Lang::En, None, _, "duplicate_of") => "Duplicate of another unit",
        (Lang::En, None, _, "priority") => "Priority",
        (Lang::En, None, _, "start") => "Start time",
        (Lang::En, Some("notes"), _, _) => "Note",
        (Lang::En, Some("checklist"), _, _) => "Checklist line",
        (Lang::En, Some("materials"), _, _) => "Material",
        _ => return field.to_owned(),
    };
    word.to_owned()
}

#[cfg(test)]
mod fields {
    use super::*;

    #[test]
    fn the_inbox_names_fields_in_words() {
        assert_eq!(field_label(Lang::Fr, "status"), "Statut");
        assert_eq!(field_label(Lang::Fr, "checklist[a1].done"), "Case cochée");
        assert_eq!(field_label(Lang::En, "deleted"), "Deletion");
        assert_eq!(field_label(Lang::Fr, "vlan"), "vlan");
    }
}
