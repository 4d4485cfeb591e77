// Reviewers: the queue, and one item at a time with everything needed to decide it in seconds.

import { consoleConfig, get, post } from "./api.js";
import { answerText, field, go, h, label, money, notify, OUTCOMES, replace, table, when } from "./dom.js";
import { reviewMap } from "./map.js";

let queueIds = [];
let shortcuts = null;
let reasonCodes = null;

const KIND_TITLES = { review: "Flagged submission", dispute: "Client dispute", appeal: "Worker appeal" };

function setShortcuts(handler) {
  if (shortcuts) document.removeEventListener("keydown", shortcuts);
  shortcuts = handler;
  if (handler) document.addEventListener("keydown", handler);
}

export function stopShortcuts() {
  setShortcuts(null);
}

async function loadQueue() {
  const items = await get("/v1/reviews/queue?limit=100");
  queueIds = items.map((item) => item.submission.id);
  return items;
}

export async function queueScreen(main) {
  setShortcuts(null);
  const items = await loadQueue();
  const rows = items.map((item) => h("tr", {},
    h("td", {}, KIND_TITLES[item.kind]),
    h("td", {}, h("a", { href: `#/review/${item.submission.id}` }, item.task.store_name)),
    h("td", {}, `${item.task.client} · ${item.task.campaign_name}`),
    h("td", {}, label(item.submission.verdict)),
    h("td", {}, when(item.waiting_since)),
    h("td", {}, when(item.decided_automatically_at)),
    h("td", {}, item.worker.display_name)));
  replace(main,
    h("h1", { tabindex: "-1" }, "Review queue"),
    h("p", {}, items.length
      ? `${items.length} item${items.length === 1 ? "" : "s"} waiting, oldest first. Open one to decide it; J and K move between items.`
      : "Nothing to review: the queue is empty."),
    items.length
      ? table("Items waiting for a decision", ["Kind", "Store", "Client and campaign", "Checks said", "Waiting since", "Settled automatically at", "Worker"], rows, "queue")
      : null);
}

function display(value, unit) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    const shown = Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, "");
    return unit ? `${shown} ${unit}` : shown;
  }
  return String(value);
}

function reportTable(report, photos) {
  const photoNumber = Object.fromEntries(photos.map((p, i) => [p.id, i + 1]));
  const order = { fail: 0, warn: 1, pass: 2 };
  const sorted = [...report].sort((a, b) => order[a.outcome] - order[b.outcome]);
  const rows = sorted.map((check) => h("tr", { class: `outcome-${check.outcome}`, "data-code": check.code },
    h("th", { scope: "row" }, h("code", {}, check.code),
      check.photo_id ? h("span", { class: "hint" }, ` photo ${photoNumber[check.photo_id] ?? ""}`) : null),
    h("td", {}, h("span", { class: `badge badge-${check.outcome}` }, check.outcome.toUpperCase())),
    h("td", { class: "value" }, display(check.value, check.unit)),
    h("td", { class: "threshold" }, display(check.threshold, check.unit)),
    h("td", {}, check.message)));
  return table("Validation report: each check, its measured value and its threshold (problems first)",
    ["Check", "Outcome", "Value", "Threshold", "What it means"], rows, "report");
}

function historyList(worker) {
  const item = (term, value) => [h("dt", {}, term), h("dd", {}, String(value))];
  return h("section", { class: "panel history", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "Worker history"),
    h("dl", {},
      item("Worker", worker.display_name),
      item("Member since", when(worker.member_since)),
      item("Submissions", worker.submissions),
      item("Approved", worker.approved),
      item("Rejected", worker.rejected),
      item("Appeals", worker.appeals),
      item("Appeals reversed", worker.appeals_reversed)));
}

function contestPanel(item) {
  const s = item.submission;
  if (item.kind === "appeal") {
    return h("section", { class: "panel contest", "aria-labelledby": "contest-title" },
      h("h2", { id: "contest-title" }, "Appeal of an earlier decision"),
      h("p", {}, h("strong", {}, "Earlier decision: "), `${label(s.status === "appealed" ? "rejected" : s.status)} by ${s.decided_by ?? "—"} on ${when(s.decided_at)}`),
      h("p", {}, h("strong", {}, "Reason: "), h("code", {}, s.reason_code ?? "—"), ` ${s.reason ?? ""}`),
      h("p", {}, h("strong", {}, "Comment: "), s.decision_comment ?? "—"),
      h("p", {}, h("strong", {}, "The worker says: "), s.appeal?.message ?? "—"));
  }
  if (item.kind === "dispute") {
    return h("section", { class: "panel contest", "aria-labelledby": "contest-title" },
      h("h2", { id: "contest-title" }, "Dispute by the client"),
      h("p", {}, h("strong", {}, "Reason: "), h("code", {}, s.dispute?.reason_code ?? "—"), ` ${s.dispute?.reason ?? ""}`),
      h("p", {}, h("strong", {}, "The client says: "), s.dispute?.message ?? "—"),
      h("p", {}, "Approving dismisses the dispute (the worker keeps the reward); rejecting upholds it."));
  }
  return null;
}

function slotLabel(item, photo) {
  const slot = item.checklist?.items.find((i) => i.name === photo.slot);
  return slot ? ` (${slot.label})` : "";
}

function photoGallery(item) {
  if (!item.photos.length) return h("p", {}, "No photo.");
  return h("div", { class: "gallery" }, item.photos.map((photo, index) => {
    const button = h("button", {
      type: "button", class: "photo", "aria-pressed": "false",
      onclick: () => toggleZoom(button),
    },
    h("img", { src: photo.url, alt: `Photo ${index + 1} of ${item.photos.length}${slotLabel(item, photo)}, taken ${when(photo.captured_at)}` }),
    h("span", { class: "photo-caption" }, `Photo ${index + 1}${slotLabel(item, photo)}: ${photo.width ?? "?"}×${photo.height ?? "?"} px, taken ${when(photo.captured_at)}. Click or Z to zoom.`));
    return button;
  }));
}

// The checklist as the worker answered it: each question's answer, each slot's photos (by their
// number in the gallery), in the checklist's order.
function checklistPanel(item) {
  const photoNumber = Object.fromEntries(item.photos.map((p, i) => [p.id, i + 1]));
  const definition = Object.fromEntries(item.checklist.items.map((i) => [i.name, i]));
  const outcome = item.submission.outcome;
  const rows = item.items.filter((entry) => entry.kind !== "note").map((entry) => h("tr", { "data-item": entry.name },
    h("th", { scope: "row" }, entry.label, h("span", { class: "hint" }, ` ${entry.name}`)),
    h("td", {}, entry.kind === "photo"
      ? (entry.photo_ids?.length ? entry.photo_ids.map((p) => `photo ${photoNumber[p] ?? "?"}`).join(", ") : "no photo")
      : answerText(entry.answer, definition[entry.name]))));
  return h("section", { class: "panel checklist", "aria-labelledby": "checklist-title" },
    h("h2", { id: "checklist-title" }, `Checklist (version ${item.checklist.version})`),
    outcome
      ? h("p", { class: "outcome", role: "note" }, h("strong", {}, "Couldn't complete: "), `${OUTCOMES[outcome] ?? outcome} (${outcome}). The photos are the evidence.`)
      : null,
    table("Each checklist item and what the worker answered or photographed", ["Item", "Answer"], rows, "answers"));
}

function toggleZoom(button) {
  const zoomed = button.getAttribute("aria-pressed") !== "true";
  for (const other of document.querySelectorAll(".photo[aria-pressed='true']")) other.setAttribute("aria-pressed", "false");
  button.setAttribute("aria-pressed", String(zoomed));
  button.closest(".item-view")?.classList.toggle("zooming", zoomed);
}

export async function reviewScreen(main, id) {
  setShortcuts(null);
  const [items, config] = await Promise.all([loadQueue(), consoleConfig()]);
  reasonCodes ??= await get("/v1/reason-codes");
  const item = items.find((i) => i.submission.id === id);
  if (!item) {
    replace(main, h("h1", { tabindex: "-1" }, "Not in your queue"),
      h("p", {}, "This item was decided, or another reviewer holds it."),
      h("p", {}, h("a", { href: "#/queue" }, "Back to the queue")));
    return;
  }
  const position = queueIds.indexOf(id);
  let claim = null;
  let claimError = null;
  try {
    claim = await post(`/v1/submissions/${id}/claim`);
  } catch (exc) {
    claimError = exc.message;
  }
  const contested = item.kind !== "review";
  const reasons = reasonCodes.rejection;
  const reason = h("select", { id: "reason", name: "reason", "aria-describedby": "reason-hint" },
    h("option", { value: "" }, "Choose a reason to reject…"),
    reasons.map((r) => h("option", { value: r.code }, `${r.code}: ${r.description}`)));
  const failedItem = h("select", { id: "item", name: "item", "aria-describedby": "item-hint" },
    h("option", { value: "" }, "No particular item"),
    item.checklist.items.filter((i) => i.kind !== "note").map((i) => h("option", { value: i.name }, i.label)));
  const comment = h("textarea", { id: "comment", name: "comment", rows: 3, maxlength: 4000, "aria-describedby": "comment-hint" });
  const error = h("p", { class: "error", role: "alert" });
  const decide = async (decision) => {
    error.textContent = "";
    const body = { decision };
    const words = comment.value.trim();
    if (decision === "reject") {
      if (!reason.value) {
        error.textContent = "Choose the reason code the worker will see.";
        reason.focus();
        return;
      }
      body.reason_code = reason.value;
      body.comment = words || reasons.find((r) => r.code === reason.value).description;
      if (failedItem.value) body.item = failedItem.value;
    } else if (words) {
      body.comment = words;
    } else if (contested) {
      error.textContent = "Say why in a comment: an appeal or a dispute is decided with one.";
      comment.focus();
      return;
    }
    try {
      const outcome = await post(`/v1/submissions/${id}/review`, body);
      notify(`${decision === "approve" ? "Approved" : `Rejected (${outcome.reason_code})`}: ${item.task.store_name}.`, "success");
      const next = queueIds[position + 1] ?? queueIds[position - 1];
      go(next && next !== id ? `#/review/${next}` : "#/queue");
    } catch (exc) {
      error.textContent = exc.message;
    }
  };
  const move = (step) => {
    const target = queueIds[position + step];
    if (target) go(`#/review/${target}`);
  };
  const view = h("div", { class: "item-view" },
    h("div", { class: "item-head" },
      h("h1", { tabindex: "-1" }, `${KIND_TITLES[item.kind]}: ${item.task.store_name}`),
      h("p", { class: "meta" },
        `Item ${position + 1} of ${queueIds.length} · ${item.task.client} · ${item.task.campaign_name} · ${money(item.task.reward_cents, item.task.currency)} · `,
        `settled automatically at ${when(item.decided_automatically_at)}`),
      h("p", { class: "meta" }, h("strong", {}, "Purpose: "), item.task.purpose),
      h("p", { class: claim ? "meta" : "error", role: claim ? null : "alert" },
        claim ? `Held by you until ${when(claim.claim_expires_at)}.` : `Not held: ${claimError}`)),
    h("section", { class: "photos", "aria-label": "Photos" }, photoGallery(item)),
    checklistPanel(item),
    h("section", { class: "panel where", "aria-labelledby": "map-title" },
      h("h2", { id: "map-title" }, "Where"),
      reviewMap(item, config)),
    contestPanel(item),
    h("form", { class: "panel decision", "aria-labelledby": "decision-title", onsubmit: (e) => e.preventDefault() },
      h("h2", { id: "decision-title" }, "Decision"),
      field("reason", "Reason code (required to reject)", reason, "The worker sees the code and its published text."),
      field("item", "Checklist item that failed (optional)", failedItem, "The worker sees which item the rejection is about."),
      field("comment", contested ? "Comment (required)" : "Comment (optional; a rejection without one shows the reason's text)", comment,
        "The worker reads it."),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "approve", onclick: () => decide("approve") }, "Approve (A)"),
        h("button", { type: "button", class: "reject", onclick: () => decide("reject") }, "Reject (R)"),
        h("button", { type: "button", class: "secondary", disabled: position <= 0, onclick: () => move(-1) }, "Previous (K)"),
        h("button", { type: "button", class: "secondary", disabled: position >= queueIds.length - 1, onclick: () => move(1) }, "Next (J)")),
      error,
      h("p", { class: "hint" }, "Keys: A approve · R reject (choose the reason first, or R to go to it) · J next · K previous · Z zoom the photo · Esc unzoom")),
    historyList(item.worker),
    h("section", { class: "panel checks", "aria-labelledby": "checks-title" },
      h("h2", { id: "checks-title" }, "Checks"),
      reportTable(item.submission.report, item.photos)));
  replace(main, view);
  setShortcuts((event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    if (event.key === "Escape") {
      const zoomed = document.querySelector(".photo[aria-pressed='true']");
      if (zoomed) toggleZoom(zoomed);
      if (typing) event.target.blur();
      return;
    }
    if (typing) return;
    const key = event.key.toLowerCase();
    if (key === "a") decide("approve");
    else if (key === "r") {
      if (reason.value) decide("reject");
      else reason.focus();
    } else if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "z") {
      const focused = document.activeElement?.closest?.(".photo");
      const target = focused ?? document.querySelector(".photo");
      if (target) toggleZoom(target);
    } else return;
    event.preventDefault();
  });
}
