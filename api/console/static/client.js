// Clients: campaigns and their progress, the map of stores by task status, results with the
// answers and sanitized photos, the server's exports, and disputes of accepted work within the
// window.

import { consoleConfig, downloadFrom, get, post } from "./api.js";
import { answerText, field, go, h, label, money, notify, OUTCOMES, replace, table, when } from "./dom.js";
import { STATUS_LETTERS, campaignMap } from "./map.js";

const STATUSES = Object.keys(STATUS_LETTERS);

function progress(campaign) {
  const total = campaign.task_total || 1;
  const present = STATUSES.filter((s) => campaign.task_counts[s]);
  return h("div", { class: "progress-block" },
    h("div", { class: "progress", "aria-hidden": "true" }, present.map((status) => {
      const bar = h("span", { class: `segment status-${status}` });
      bar.style.width = `${(100 * campaign.task_counts[status]) / total}%`;
      return bar;
    })),
    h("p", { class: "progress-text" }, present.map((s) => `${label(s)} ${campaign.task_counts[s]}`).join(" · ") || "no tasks"));
}

async function allPages(path) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(`${path}${path.includes("?") ? "&" : "?"}limit=500${cursor ? `&cursor=${cursor}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

export async function campaignsScreen(main) {
  const campaigns = await allPages("/v1/campaigns");
  const rows = campaigns.map((c) => h("tr", {},
    h("th", { scope: "row" }, h("a", { href: `#/campaigns/${c.id}` }, c.name)),
    h("td", {}, label(c.status)),
    h("td", {}, `${when(c.starts_at)} – ${when(c.ends_at)}`),
    h("td", {}, money(c.reward_cents, c.currency)),
    h("td", {}, String(c.task_total)),
    h("td", {}, progress(c))));
  replace(main,
    h("h1", { tabindex: "-1" }, "Campaigns"),
    campaigns.length
      ? table("Your organization's campaigns, with tasks by status", ["Campaign", "Status", "Runs", "Reward per task", "Tasks", "Progress"], rows, "campaigns")
      : h("p", {}, "No campaign yet."));
}

// The answers as "label: answer" lines, in checklist order (labels of the campaign's current
// checklist; an item it no longer has shows its name), or the outcome of a visit cut short.
function answersList(r, campaign) {
  if (r.outcome) return h("span", { class: "outcome" }, `Couldn't complete: ${OUTCOMES[r.outcome] ?? r.outcome}`);
  const items = Object.fromEntries(campaign.checklist.items.map((i) => [i.name, i]));
  const entries = Object.entries(r.answers ?? {});
  if (!entries.length) return "—";
  return h("dl", { class: "answers" }, entries.flatMap(([name, value]) => [
    h("dt", {}, items[name]?.label ?? name),
    h("dd", {}, answerText(value, items[name]))]));
}

function disputeDeadline(r, config) {
  if (r.dispute_deadline) return new Date(r.dispute_deadline);
  if (r.submission_status === "approved" && r.submitted_at) {
    return new Date(new Date(r.submitted_at).getTime() + config.acceptance_window_hours * 3600_000);
  }
  return null;
}

async function loadThumbnails(campaignId, images) {
  const queue = [...images];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      try {
        const link = await get(`/v1/campaigns/${campaignId}/photos/${next.dataset.photo}/link`);
        next.src = link.url;
      } catch {
        next.alt = `${next.alt} (unavailable)`;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

export async function campaignScreen(main, id) {
  const [campaign, results, config, codes] = await Promise.all([
    get(`/v1/campaigns/${id}`), allPages(`/v1/campaigns/${id}/results`), consoleConfig(), get("/v1/reason-codes"),
  ]);
  results.sort((a, b) => a.store_name.localeCompare(b.store_name));
  const disputeArea = h("div", { class: "dispute-area" });
  const openDispute = (r) => {
    const reason = h("select", { id: "dispute-reason", name: "reason", required: true },
      h("option", { value: "" }, "Choose a reason…"),
      codes.dispute.map((c) => h("option", { value: c.code }, `${c.code}: ${c.description}`)));
    const message = h("textarea", { id: "dispute-message", name: "message", rows: 3, maxlength: 4000, required: true });
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "panel", "aria-labelledby": "dispute-title", onsubmit: async (event) => {
      event.preventDefault();
      if (!reason.value || !message.value.trim()) {
        error.textContent = "A dispute needs a reason code and a message: a reviewer decides, and the worker reads them.";
        return;
      }
      try {
        await post(`/v1/submissions/${r.submission_id}/dispute`, { reason_code: reason.value, message: message.value.trim() });
        notify(`Disputed the work at ${r.store_name}: a reviewer will decide.`, "success");
        go(`#/campaigns/${id}`);
      } catch (exc) {
        error.textContent = exc.message;
      }
    } },
    h("h2", { id: "dispute-title", tabindex: "-1" }, `Dispute the work at ${r.store_name}`),
    h("p", {}, `Possible until ${when(disputeDeadline(r, config))}. A reviewer decides, not the client.`),
    field("dispute-reason", "Reason code", reason),
    field("dispute-message", "Message (what is wrong)", message),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "reject" }, "Send the dispute"),
      h("button", { type: "button", class: "secondary", onclick: () => replace(disputeArea) }, "Cancel")),
    error);
    replace(disputeArea, form);
    form.querySelector("h2").focus();
  };
  const now = Date.now();
  const thumbnails = [];
  const rows = results.map((r) => {
    const deadline = disputeDeadline(r, config);
    const canDispute = ["pending_acceptance", "approved"].includes(r.submission_status) && deadline && deadline.getTime() > now;
    const photos = r.photos.map((p, i) => {
      const img = h("img", { class: "thumb", alt: `Photo ${i + 1} at ${r.store_name}`, "data-photo": p.id });
      thumbnails.push(img);
      return img;
    });
    return h("tr", { "data-task": r.task_id, class: `status-row` },
      h("th", { scope: "row" }, r.store_name, r.store_external_ref ? h("span", { class: "hint" }, ` ${r.store_external_ref}`) : null),
      h("td", {}, h("span", { class: `badge status-${r.status}` }, `${STATUS_LETTERS[r.status] ?? "?"} · ${label(r.status)}`)),
      h("td", {}, when(r.submitted_at)),
      h("td", {}, r.verdict ? label(r.verdict) : "—", r.submission_status ? h("span", { class: "hint" }, ` (${label(r.submission_status)})`) : null),
      h("td", { class: "answers-cell" }, answersList(r, campaign)),
      h("td", { class: "photos-cell" }, photos.length ? photos : "—"),
      h("td", { class: "actions-cell" },
        r.submission_status === "pending_acceptance"
          ? h("button", { type: "button", class: "approve", onclick: async () => {
            try {
              await post(`/v1/submissions/${r.submission_id}/accept`);
              notify(`Accepted the work at ${r.store_name}.`, "success");
              go(`#/campaigns/${id}`);
            } catch (exc) {
              notify(exc.message, "error");
            }
          } }, "Accept")
          : null,
        canDispute ? h("button", { type: "button", class: "reject", onclick: () => openDispute(r) }, "Dispute") : null));
  });
  const slug = campaign.name.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "") || "campaign";
  replace(main,
    h("h1", { tabindex: "-1" }, campaign.name),
    h("p", { class: "meta" }, `${label(campaign.status)} · ${money(campaign.reward_cents, campaign.currency)} per task · ${when(campaign.starts_at)} – ${when(campaign.ends_at)}`),
    h("p", { class: "meta" }, h("strong", {}, "Purpose: "), campaign.purpose),
    progress(campaign),
    h("section", { class: "panel", "aria-labelledby": "campaign-map-title" },
      h("h2", { id: "campaign-map-title" }, "Stores by task status"),
      campaignMap(results, config)),
    h("section", { class: "panel", "aria-labelledby": "exports-title" },
      h("h2", { id: "exports-title" }, "Export"),
      h("div", { class: "actions" },
        ["csv", "geojson", "xlsx"].map((format) => h("button", { type: "button", class: "secondary", id: `export-${format}`, onclick: async () => {
          try {
            await downloadFrom(`/v1/campaigns/${id}/export?format=${format}`, `${slug}-results.${format}`);
          } catch (exc) {
            notify(exc.message, "error");
          }
        } }, `Results as ${format === "geojson" ? "GeoJSON" : format.toUpperCase()}`)),
        h("button", { type: "button", class: "secondary", id: "export-zip", onclick: async () => {
          try {
            await downloadFrom(`/v1/campaigns/${id}/photos.zip`, `${slug}-photos.zip`);
          } catch (exc) {
            notify(exc.message, "error");
          }
        } }, "Accepted photos as zip"))),
    disputeArea,
    h("section", { class: "panel", "aria-labelledby": "results-title" },
      h("h2", { id: "results-title" }, "Results"),
      table("Each store's task, its latest submission and the photos of accepted work (sanitized: no location data)",
        ["Store", "Task status", "Submitted", "Verdict", "Answers", "Photos", "Actions"], rows, "results")));
  loadThumbnails(id, thumbnails);
}
