//! The mobile platform files (`android/`, `ios/`) cannot be built on the CI machines (no Android
//! SDK or Xcode); these checks hold them to what the app needs: well-formed, the camera and
//! location permissions with a reason in each language, and the magic-link URL scheme the Tauri
//! config declares.

use std::collections::BTreeMap;

use roxmltree::{Document, Node};
use tests::app_driver::workspace;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn tauri_conf() -> serde_json::Value {
    serde_json::from_str(&read("app-tauri/tauri.conf.json")).unwrap()
}

/// The deep-link scheme `tauri.conf.json` declares for mobile.
fn scheme() -> String {
    tauri_conf()["plugins"]["deep-link"]["mobile"][0]["scheme"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

const ANDROID_NS: &str = "http://schemas.android.com/apk/res/android";

fn android_attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute((ANDROID_NS, name))
}

#[test]
fn the_android_manifest_asks_for_what_the_app_uses_and_opens_magic_links() {
    let text = read("android/app/src/main/AndroidManifest.xml");
    let doc = Document::parse(&text).expect("well-formed AndroidManifest.xml");
    let permissions: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("uses-permission"))
        .filter_map(|n| android_attr(n, "name"))
        .collect();
    for p in [
        "INTERNET",
        "CAMERA",
        "ACCESS_FINE_LOCATION",
        "ACCESS_COARSE_LOCATION",
    ] {
        assert!(
            permissions.contains(&format!("android.permission.{p}").as_str()),
            "permission {p} in {permissions:?}"
        );
    }
    assert!(
        !permissions
            .iter()
            .any(|p| p.ends_with("ACCESS_BACKGROUND_LOCATION")),
        "the position is read on check-in only"
    );
    // The login link opens the app: a browsable VIEW filter on the Tauri scheme.
    let link = doc
        .descendants()
        .filter(|n| n.has_tag_name("intent-filter"))
        .find(|f| {
            f.descendants().any(|d| {
                d.has_tag_name("data")
                    && android_attr(d, "scheme") == Some(scheme().as_str())
                    && android_attr(d, "host") == Some("login")
            })
        })
        .expect("an intent filter for the login link");
    let has = |tag: &str, value: &str| {
        link.children()
            .any(|c| c.has_tag_name(tag) && android_attr(c, "name") == Some(value))
    };
    assert!(has("action", "android.intent.action.VIEW"));
    assert!(has("category", "android.intent.category.BROWSABLE"));
    // The verified App Link comes first: https on the server's host, checked by Android.
    let app_link = doc
        .descendants()
        .filter(|n| n.has_tag_name("intent-filter"))
        .find(|f| {
            f.descendants().any(|d| {
                d.has_tag_name("data")
                    && android_attr(d, "scheme") == Some("https")
                    && android_attr(d, "path") == Some("/login")
                    && android_attr(d, "host") == Some("${fsmLinkHost}")
            })
        })
        .expect("a verified App Link for https login links");
    assert_eq!(android_attr(app_link, "autoVerify"), Some("true"));
    let entitlements = read("ios/app.entitlements");
    let plist = Document::parse_with_options(
        &entitlements,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        },
    )
    .expect("well-formed iOS entitlements");
    assert!(
        plist
            .descendants()
            .any(|n| n.text() == Some("applinks:FSM_LINK_HOST")),
        "Universal Links for login links"
    );
    let app = doc
        .descendants()
        .find(|n| n.has_tag_name("application"))
        .unwrap();
    assert_eq!(android_attr(app, "usesCleartextTraffic"), Some("false"));
    assert_eq!(
        android_attr(app, "allowBackup"),
        Some("false"),
        "no token in cloud backups"
    );
    // The resources the manifest names exist.
    let config = read("android/app/src/main/res/xml/network_security_config.xml");
    Document::parse(&config).expect("well-formed network security config");
}

fn strings(path: &str) -> BTreeMap<String, String> {
    let text = read(path);
    let doc = Document::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("string"))
        .map(|n| {
            (
                n.attribute("name").unwrap_or_default().to_owned(),
                n.text().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn android_gives_the_reason_for_each_permission_in_french_and_english() {
    let fr = strings("android/app/src/main/res/values/strings.xml");
    let en = strings("android/app/src/main/res/values-en/strings.xml");
    assert_eq!(
        fr.keys().collect::<Vec<_>>(),
        en.keys().collect::<Vec<_>>(),
        "same strings in both languages"
    );
    for key in ["app_name", "camera_rationale", "location_rationale"] {
        for (lang, s) in [("fr", &fr), ("en", &en)] {
            assert!(
                s.get(key).is_some_and(|v| v.len() > 5 || key == "app_name"),
                "{key} in {lang}"
            );
        }
    }
    assert_ne!(fr["camera_rationale"], en["camera_rationale"], "translated");
}

/// A plist `<dict>` as key → value node.
fn plist_dict<'a, 'i>(dict: Node<'a, 'i>) -> BTreeMap<String, Node<'a, 'i>> {
    let mut out = BTreeMap::new();
    let mut key = None;
    for c in dict.children().filter(Node::is_element) {
        if c.has_tag_name("key") {
            key = c.text().map(str::to_owned);
        } else if let Some(k) = key.take() {
            out.insert(k, c);
        }
    }
    out
}

/// `"Key" = "Value";` lines of an `.strings` file.
fn dot_strings(path: &str) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().strip_suffix(';')?.split_once(" = ")?;
            Some((
                k.trim_matches('"').to_owned(),
                v.trim_matches('"').to_owned(),
            ))
        })
        .collect()
}

#[test]
fn ios_describes_each_permission_and_registers_the_login_scheme() {
    let text = read("ios/Info.plist");
    let doc = Document::parse_with_options(
        &text,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("well-formed Info.plist");
    let root = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("dict"))
        .expect("a top-level dict");
    let keys = plist_dict(root);
    let usage = [
        "NSCameraUsageDescription",
        "NSLocationWhenInUseUsageDescription",
    ];
    for k in usage {
        let v = keys.get(k).and_then(|n| n.text()).unwrap_or_default();
        assert!(v.len() > 20, "{k} explains itself: {v:?}");
    }
    assert!(
        !keys.contains_key("NSLocationAlwaysAndWhenInUseUsageDescription"),
        "the position is read on check-in only"
    );
    let schemes: Vec<String> = keys["CFBundleURLTypes"]
        .children()
        .filter(|n| n.has_tag_name("dict"))
        .flat_map(|d| {
            plist_dict(d)
                .get("CFBundleURLSchemes")
                .map(|a| {
                    a.children()
                        .filter(|s| s.has_tag_name("string"))
                        .filter_map(|s| s.text())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(schemes, [scheme()]);
    let fr = dot_strings("ios/fr.lproj/InfoPlist.strings");
    let en = dot_strings("ios/en.lproj/InfoPlist.strings");
    for k in usage {
        assert_eq!(
            fr.get(k).map(String::as_str),
            keys[k].text(),
            "{k}: the French file matches the default"
        );
        assert!(
            en.get(k)
                .is_some_and(|v| v.len() > 20 && Some(v.as_str()) != keys[k].text()),
            "{k} in English"
        );
    }
}

#[test]
fn mobile_capabilities_grant_the_scanner_and_position_on_phones_only() {
    let cap: serde_json::Value =
        serde_json::from_str(&read("app-tauri/capabilities/mobile.json")).unwrap();
    assert_eq!(cap["platforms"], serde_json::json!(["android", "iOS"]));
    let perms: Vec<&str> = cap["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(perms.contains(&"barcode-scanner:allow-scan"));
    assert!(perms.contains(&"geolocation:allow-get-current-position"));
    assert!(
        perms
            .iter()
            .all(|p| p.starts_with("barcode-scanner:") || p.starts_with("geolocation:"))
    );
    let enabled = tauri_conf()["app"]["security"]["capabilities"].clone();
    assert_eq!(enabled, serde_json::json!(["default", "mobile"]));
}
