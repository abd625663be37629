//! The real app, end to end: the built `app-tauri` binary in WebKitGTK under Xvfb, driven through
//! `tauri-driver`/WebKitWebDriver, against a real `sync-server demo` child process.
//!
//! A technician logs in with a magic link, then works offline (server stopped): en route, on
//! site, a note, an equipment serial typed and installed, completed — and closes the app. A
//! dispatcher, offline too, cancels the same job. The server comes back; both apps sync on start;
//! the dispatcher sees the technician's note and equipment and the status conflict with both
//! values and who wrote them. Before going offline the technician sees the job's box (« Réseau »,
//! read live through the server); offline, its last reading, marked as such. The dispatcher's
//! board shows the outage the demo's OLT plays (a cut feeder), with the jobs it touches. Screenshots of the main screens go to `screenshots/`.

use anyhow::{Context as _, Result};
use serde_json::json;
use tests::app_driver::{self, App, DemoServer, Stage};

const NOTE: &str = "Câble coupé au sous-sol, raccord refait";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ux_technician_offline_then_dispatcher_sees_the_work_and_the_conflict() -> Result<()> {
    let (app_bin, server_bin) = app_driver::build_binaries(false)?;
    let tmp = tempfile::tempdir()?;
    let mut server = DemoServer::start(&server_bin, &tmp.path().join("server"))?;
    let stage = Stage::start()?;
    let (tech_dir, office_dir) = (tmp.path().join("tech"), tmp.path().join("office"));

    // The dispatcher logs in with a staff token while the server is up.
    let office = stage.launch(&app_bin, &office_dir).await?;
    login(&office, &server.url, &server.dispatcher_token).await?;
    office.find("#board").await?;
    // The access network: the demo's OLT loses one PON port's feeder after its first poll
    // (SNMP, every 5 s); the board shows the outage with the jobs of the customers behind it.
    office
        .find("#outages .inc-port .affected-job")
        .await
        .context("the port outage shows on the board, with its jobs")?;
    let outage = office.text("#outages .inc-port").await?;
    assert!(
        outage.contains("Panne d’un port PON") && outage.contains("OLT Démo"),
        "{outage}"
    );
    office.screenshot("dispatcher-outages").await?;
    office.click("#outages .inc-port .affected-job").await?;
    office.find("#job-detail").await?;
    office.close().await?;

    // The technician logs in by pasting the magic link the office sent.
    let link = server.magic_link(&server.technician).await?;
    let tech = stage.launch(&app_bin, &tech_dir).await?;
    login(&tech, &server.url, &link).await?;
    tech.find("#job-list button.job").await?;
    nothing_pending(&tech).await?;
    tech.screenshot("technician-list").await?;
    fits_a_phone(&tech, "technician-list-phone").await?;
    // Today's (or the next day's) first job still to do.
    let picked = tech
        .js(
            "for (const s of document.querySelectorAll('#job-list section.day')) { \
               const b = s.querySelector('button.job.st-scheduled'); \
               if (b) return [b.dataset.job, s.dataset.day]; } return null;",
            vec![],
        )
        .await?;
    let job = picked[0]
        .as_str()
        .context("no scheduled job in the list")?
        .to_owned();
    let day = picked[1].as_str().context("the job's day")?.to_owned();

    // The job's box, read live through the server (the demo's GenieACS double), and kept.
    tech.click(&format!("#job-list button.job[data-job='{job}']"))
        .await?;
    tech.find("#network .net-facts").await?;
    tech.until_text("#network", "Dernier contact du boîtier")
        .await?;
    let to_panel = "document.getElementById('network').scrollIntoView(); return null;";
    tech.js(to_panel, vec![]).await?;
    tech.screenshot("technician-network").await?;
    tech.resize(360, 780).await?;
    tech.js(to_panel, vec![]).await?;
    fits_a_phone(&tech, "technician-network-phone").await?;
    tech.click("#back").await?;
    tech.find("#job-list button.job").await?;

    // The server goes away: everything below happens offline.
    server.stop();
    tech.click(&format!("#job-list button.job[data-job='{job}']"))
        .await?;
    tech.find("#job-detail").await?;
    // The box as last read, said to be so.
    tech.until_text("#network .net-stale", "Hors ligne").await?;
    tech.click("#to-en_route").await?;
    tech.until_text("#job-status", "route").await?;
    tech.click("#to-on_site").await?;
    tech.until_text("#job-status", "Sur place").await?;
    glove_friendly(&tech).await?;
    tech.type_into("#note-text", NOTE).await?;
    tech.click("#add-note").await?;
    tech.until_text("#notes", NOTE).await?;
    // An equipment serial, typed: a prefix first, then the full serial of the first match.
    tech.type_into("#equipment-query", "ZTEG").await?;
    tech.find("#equipment-results li code").await?;
    let serial = tech.text("#equipment-results li code").await?;
    tech.type_into("#equipment-query", &serial).await?;
    tech.until(
        "exactly the typed serial in the results",
        "const r = document.querySelectorAll('#equipment-results li code'); \
         return r.length === 1 && r[0].textContent === arguments[0];",
        vec![json!(serial)],
    )
    .await?;
    tech.click("#equipment-results li button.install").await?;
    tech.until_text("#equipment-moves", &serial).await?;
    // Ending the job asks first, and says what is still open.
    tech.click("#to-completed").await?;
    tech.until_text("#confirm-status", "Terminé").await?;
    tech.click("#confirm-yes").await?;
    tech.until_text("#job-status", "Terminé").await?;
    // Offline, and the work waits on the device.
    tech.click("#sync-now").await?;
    tech.until_text("#online", "Hors ligne").await?;
    // Offline is said calmly, in French, with nothing in red.
    tech.until_text("#online", "vos changements sont enregistrés sur l’appareil")
        .await?;
    let red = tech
        .js(
            "return document.querySelectorAll('#status .bad, #sync-error').length",
            vec![],
        )
        .await?;
    assert_eq!(red, json!(0), "no error shown for being offline");
    tech.until_text("#coverage", "sont sur l’appareil").await?;
    let pending = tech.text("#pending").await?;
    assert!(
        !pending.starts_with('0'),
        "the offline work is pending: {pending}"
    );
    tech.screenshot("job-detail").await?;
    fits_a_phone(&tech, "job-detail-phone").await?;
    tech.close().await?;

    // The dispatcher, offline as well, cancels the same job from the board.
    let office = stage.launch(&app_bin, &office_dir).await?;
    open_on_board(&office, &job, &day).await?;
    office.click("#pick-open").await?;
    office.find("#job-detail").await?;
    office.click("#to-cancelled").await?;
    office.until_text("#job-status", "Annul").await?;
    office.close().await?;

    // The server comes back. Each app syncs as it starts.
    server.restart()?;
    let tech = stage.launch(&app_bin, &tech_dir).await?;
    tech.find("#job-list").await?;
    nothing_pending(&tech).await?;
    tech.until_text("#online", "En ligne").await?;
    tech.close().await?;

    let office = stage.launch(&app_bin, &office_dir).await?;
    office.find("#board").await?;
    nothing_pending(&office).await?;
    // The conflict shows on the board (a badge on the job) and in the inbox.
    office
        .until_text("#nav-conflicts .badge", "1")
        .await
        .context("the dispatcher is told about the conflict")?;
    open_on_board(&office, &job, &day).await?;
    office
        .find(&format!("#board button.card-job[data-job='{job}'] .badge"))
        .await?;
    office.screenshot("dispatcher-board").await?;
    board_reads_at_a_glance(&office).await?;
    board_search(&office).await?;
    office.click("#nav-conflicts").await?;
    let item = format!("#conflicts li.conflict[data-doc='{job}'][data-field='status']");
    office.find(&item).await?;
    let text = office.text(&item).await?;
    for expected in ["Statut", "Terminé", "Annulé", "Technicien", "Répartiteur"] {
        assert!(
            text.contains(expected),
            "the conflict shows {expected:?}: {text}"
        );
    }
    office.screenshot("conflict-inbox").await?;
    // The technician's note and equipment reached the dispatcher.
    office.click(&format!("{item} h2 button")).await?;
    office.until_text("#notes", NOTE).await?;
    office.until_text("#equipment-moves", &serial).await?;
    office.close().await?;

    stage.stop();
    server.stop();
    for shot in [
        "technician-list",
        "job-detail",
        "dispatcher-board",
        "conflict-inbox",
    ] {
        let p = app_driver::screenshots_dir().join(format!("{shot}.png"));
        assert!(std::fs::metadata(&p)?.len() > 1000, "{} saved", p.display());
    }
    Ok(())
}

/// The login screen: server address and a link or token.
async fn login(app: &App, server: &str, credential: &str) -> Result<()> {
    app.type_into("#server", server).await?;
    app.type_into("#credential", credential).await?;
    app.click("#login").await
}

/// Shows `day` on the dispatcher's board and picks `job` there.
async fn open_on_board(app: &App, job: &str, day: &str) -> Result<()> {
    app.find("#board").await?;
    app.click("#view-day").await?;
    app.click("#board-today").await?;
    let today = app.text("#board-range").await?;
    let (today, day) = (parse_day(&today)?, parse_day(day)?);
    for _ in 0..(day - today).num_days() {
        app.click("#board-next").await?;
    }
    app.until_text("#board-range", &day.to_string()).await?;
    app.click(&format!("#board button.card-job[data-job='{job}']"))
        .await?;
    app.find("#pickbar").await?;
    Ok(())
}

fn parse_day(s: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").with_context(|| format!("a date: {s}"))
}

/// At 360 px wide (a small phone) the screen reflows without sideways scrolling; the window
/// goes back to desktop size afterwards.
async fn fits_a_phone(app: &App, shot: &str) -> Result<()> {
    app.resize(360, 780).await?;
    let wide = app
        .js(
            "return [...document.querySelectorAll('body *')] \
               .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1) \
               .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className);",
            vec![],
        )
        .await?;
    app.until(
        "the page fits 360 px",
        "return window.innerWidth <= 400 && \
         document.documentElement.scrollWidth <= window.innerWidth + 1;",
        vec![],
    )
    .await
    .with_context(|| format!("wider than the screen: {wide}"))?;
    app.screenshot(shot).await?;
    app.resize(1280, 800).await?;
    Ok(())
}

/// On a 360-px phone, the job page is made for a gloved thumb: big call and directions buttons,
/// arrival in one tap, and the next status in a bar fixed at the bottom of the screen.
async fn glove_friendly(app: &App) -> Result<()> {
    app.resize(360, 780).await?;
    app.until(
        "a phone-sized window",
        "return window.innerWidth <= 400;",
        vec![],
    )
    .await?;
    let checks = app
        .js(
            "const h = s => { const e = document.querySelector(s);                  return e ? e.getBoundingClientRect().height : 0; };              const bar = document.querySelector('.status-actions');              const r = bar.getBoundingClientRect();              return { call: h('#call'), directions: h('#directions'), checkIn: h('#check-in'),                       position: getComputedStyle(bar).position,                       atBottom: Math.abs(r.bottom - window.innerHeight) <= 1,                       typedPositionHidden: !document.querySelector('#job-detail details').open };",
            vec![],
        )
        .await?;
    for target in ["call", "directions", "checkIn"] {
        let height = checks[target].as_f64().unwrap_or(0.0);
        assert!(
            height >= 44.0,
            "{target} is {height} px tall, under a thumb's 44"
        );
    }
    assert_eq!(checks["position"], json!("fixed"), "{checks}");
    assert_eq!(
        checks["atBottom"],
        json!(true),
        "the status bar at the bottom"
    );
    assert_eq!(checks["typedPositionHidden"], json!(true));
    // Each checklist line is its box and its label on one row, the box big enough for a
    // glove, with the progress beside the heading.
    let lines = app
        .js(
            "return { progress: (document.querySelector('#checklist-progress') || {}).textContent,                       lines: [...document.querySelectorAll('.checklist label')].map(l => {                         const box = l.querySelector('input').getBoundingClientRect();                         return { box: box.height, boxWidth: box.width, rowHeight: l.getBoundingClientRect().height }; }) };",
            vec![],
        )
        .await?;
    let progress = lines["progress"].as_str().unwrap_or_default();
    assert!(
        progress
            .split_once('/')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok()),
        "checklist progress reads `{progress}`"
    );
    let rows = lines["lines"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty(), "the demo job has a checklist: {lines}");
    for row in rows {
        assert!(
            row["box"].as_f64().unwrap_or(0.0) >= 24.0,
            "a small box: {row}"
        );
        // One row: the label is no taller than two lines of text beside the box.
        assert!(
            row["rowHeight"].as_f64().unwrap_or(999.0) <= 64.0,
            "the line wraps: {row}"
        );
        // The box keeps its size; the label's text sits beside it, not under it.
        assert!(
            row["boxWidth"].as_f64().unwrap_or(999.0) <= 48.0,
            "a stretched box: {row}"
        );
    }
    app.screenshot("job-detail-onsite-phone").await?;
    app.resize(1280, 800).await?;
    Ok(())
}

/// On a 1920-px desktop, the day board reads at a glance: a legend names every status colour,
/// each card says its customer and town (not only on hover), a card is as long as its job
/// (overlaps and gaps show), and the working hours fit without scrolling sideways.
async fn board_reads_at_a_glance(app: &App) -> Result<()> {
    app.resize(1920, 1080).await?;
    app.until(
        "a desktop-sized window",
        "return window.innerWidth >= 1900;",
        vec![],
    )
    .await?;
    app.click("#view-day").await?;
    let legend = app.text("#legend").await?;
    for status in [
        "Planifié",
        "En route",
        "Sur place",
        "Terminé",
        "Non terminé",
        "Annulé",
    ] {
        assert!(
            legend.contains(status),
            "the legend names {status}: {legend}"
        );
    }
    // The statuses of a job's day read apart at a glance, and each card has its status's
    // colour from the legend.
    let colours = app
        .js(
            "const colour = e => getComputedStyle(e).borderLeftColor;              const legend = Object.fromEntries([...document.querySelectorAll('#legend li')]                .map(l => [l.dataset.status, colour(l)]));              const cards = [...document.querySelectorAll('#board .card-job')].map(c => {                const status = [...c.classList].find(k => k.startsWith('st-')).slice(3);                return { status, card: colour(c), legend: legend[status] || null }; });              const kinds = ['scheduled', 'en_route', 'on_site', 'completed', 'cancelled'];              return { distinct: new Set(kinds.map(k => legend[k])).size, cards };",
            vec![],
        )
        .await?;
    assert_eq!(
        colours["distinct"],
        json!(5),
        "five colours for five kinds of status: {colours}"
    );
    for c in colours["cards"].as_array().cloned().unwrap_or_default() {
        assert_eq!(c["card"], c["legend"], "the legend's colour: {c}");
    }
    let cards = app
        .js(
            "return [...document.querySelectorAll('#board .grid.day td.slot .card-job')].map(c => {                const cell = c.closest('td').getBoundingClientRect();                const card = c.getBoundingClientRect();                const where = c.querySelector('.where');                return { duration: Number(c.dataset.duration), width: card.width, cell: cell.width,                         left: card.left - cell.left, start: c.querySelector('.time').textContent,                         where: where ? where.textContent : '' }; });",
            vec![],
        )
        .await?;
    let cards = cards.as_array().cloned().unwrap_or_default();
    assert!(!cards.is_empty(), "the board shows jobs");
    let mut durations = std::collections::BTreeSet::new();
    for c in &cards {
        let where_ = c["where"].as_str().unwrap_or_default();
        assert!(
            where_.contains(" · "),
            "a card names its customer and town: {c}"
        );
        let (duration, width, cell) = (
            c["duration"].as_f64().unwrap_or(0.0),
            c["width"].as_f64().unwrap_or(0.0),
            c["cell"].as_f64().unwrap_or(1.0),
        );
        durations.insert(duration as u32);
        let hours = duration / 60.0;
        assert!(
            (width - hours * cell).abs() <= 8.0 * hours.max(1.0),
            "a {duration}-minute card spans {width} px, the hour is {cell} px: {c}"
        );
    }
    assert!(
        durations.len() > 1,
        "jobs of different lengths to compare: {durations:?}"
    );
    let fits = app
        .js(
            "const w = document.querySelector('#board .grid-wrap');              return { page: document.documentElement.scrollWidth <= window.innerWidth + 1,                       grid: w.scrollWidth <= w.clientWidth + 1 };",
            vec![],
        )
        .await?;
    assert_eq!(
        fits,
        json!({"page": true, "grid": true}),
        "the day fits 1920 px"
    );
    app.screenshot("dispatcher-board-day-1920").await?;
    app.resize(1280, 800).await?;
    Ok(())
}

/// The board's search: a card's customer typed in keeps that card and hides others (and says
/// how many); clearing the filters brings every card back.
async fn board_search(app: &App) -> Result<()> {
    let count = "return document.querySelectorAll('#board .card-job').length;";
    let before = app.js(count, vec![]).await?;
    let picked = app
        .js(
            "const c = document.querySelector('#board .grid .card-job'); \
             return c ? [c.dataset.job, c.title.split(' · ')[1]] : null;",
            vec![],
        )
        .await?;
    let (job, customer) = (
        picked[0]
            .as_str()
            .context("a card on the board")?
            .to_owned(),
        picked[1].as_str().context("its customer")?.to_owned(),
    );
    app.type_into("#board-search", &customer).await?;
    app.until(
        "the search keeps the customer's card and hides others",
        "const cards = document.querySelectorAll('#board .card-job'); \
         const hidden = document.querySelector('#filter-hidden'); \
         return !!hidden && parseInt(hidden.textContent, 10) > 0 && cards.length < arguments[1] \
           && !!document.querySelector(`#board .card-job[data-job='${arguments[0]}']`);",
        vec![json!(job), before.clone()],
    )
    .await?;
    app.screenshot("dispatcher-board-search").await?;
    app.click("#filter-clear").await?;
    app.until(
        "clearing the filters shows every card again",
        "return !document.querySelector('#filter-hidden') \
           && document.querySelectorAll('#board .card-job').length === arguments[0];",
        vec![before],
    )
    .await?;
    Ok(())
}

/// Waits until the status bar says no change waits to be sent.
async fn nothing_pending(app: &App) -> Result<()> {
    app.until(
        "no pending change",
        "const e = document.querySelector('#pending'); \
         return !!e && /^0\\s/.test(e.textContent.trim());",
        vec![],
    )
    .await
}
