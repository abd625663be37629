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
    Offline,
    Online,
    Day,
    Week,
    Previous,
    Next,
    Unassigned,
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
    Technician,
    BoardHelp,
    Map,
    Minutes,
    Error,
    Dismiss,
    Language,
    PhotosWaiting,
    Rejected,
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
            ScanOrType => "Numéro de série ou MAC",
            Install => "Installer",
            Swap => "Remplacer",
            Return => "Retourner",
            Replaces => "remplace",
            Description => "Description",
            SyncNow => "Synchroniser",
            Syncing => "Synchronisation…",
            LastSync => "Dernière synchro",
            Never => "jamais",
            Pending => "en attente",
            OnDevice => "Sur l’appareil",
            Offline => "Hors ligne",
            Online => "En ligne",
            Day => "Jour",
            Week => "Semaine",
            Previous => "Précédent",
            Next => "Suivant",
            Unassigned => "Non assignés",
            NewJob => "Nouveau travail",
            Edit => "Modifier",
            Save => "Enregistrer",
            Cancel => "Annuler",
            Title => "Titre",
            Date => "Date",
            Start => "Début",
            Duration => "Durée (min)",
            Priority => "Priorité",
            Suggest => "Suggestions",
            Assign => "Assigner",
            Unassign => "Désassigner",
            Eligible => "admissible",
            NotEligible => "non admissible",
            KeepValue => "Garder",
            NoConflicts => "Aucun conflit.",
            WrittenBy => "par",
            Shown => "affiché",
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
            Offline => "Offline",
            Online => "Online",
            Day => "Day",
            Week => "Week",
            Previous => "Previous",
            Next => "Next",
            Unassigned => "Unassigned",
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
        (Lang::Fr, "could_not_complete") => "Non complété",
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

/// A priority in words.
/// A role (as authors are written: `Technician`, `Dispatcher`, `Admin`, `Server`) in words.
pub fn role(lang: Lang, r: &str) -> String {
    let word = match (lang, r) {
        (Lang::Fr, "Technician") => "Technicien",
        (Lang::Fr, "Dispatcher") => "Répartiteur",
        (Lang::Fr, "Admin") => "Administrateur",
        (Lang::Fr, "Server") => "Serveur (ERPNext)",
        (Lang::En, "Server") => "Server (ERPNext)",
        (_, other) => other,
    };
    word.to_owned()
}

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
        (Lang::Fr, TravelKm(km)) => format!("{km} km de route"),
        (Lang::En, TravelKm(km)) => format!("{km} km away"),
        (Lang::Fr, NoSlotTime) => "pas d’heure fixée".into(),
        (Lang::En, NoSlotTime) => "no start time set".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
