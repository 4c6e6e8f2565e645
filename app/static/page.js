/*
 * Clinician page: submit the form to /predict as JSON and show the answer.
 *
 * Progressive enhancement: without this script the form posts to "/" and the server
 * renders the same result. Display rules (percent format, value text, decision text)
 * mirror app/page.py; the labels and sentences come from the #page-config JSON the
 * server renders from stroke_risk.data.schema, so they are defined once. Text is only ever
 * set with textContent (no HTML from responses), and there are no inline handlers, so
 * the page runs under a strict Content-Security-Policy.
 */
(function () {
  "use strict";

  var REQUEST_TIMEOUT_MS = 15000;
  var form = document.getElementById("risk-form");
  var configElement = document.getElementById("page-config");
  if (!form || !configElement || !window.fetch || !window.JSON) {
    return; // the server-rendered form keeps working
  }
  var config = JSON.parse(configElement.textContent);
  var fieldNames = Object.keys(config.fields);
  var submitButton = document.getElementById("submit-button");
  var submitLabel = submitButton.textContent;
  var busy = false;

  function byId(id) {
    return document.getElementById(id);
  }

  /** Probability as a percentage with one decimal; same rule as page.format_percent. */
  function formatPercent(probability) {
    var percent = probability * 100;
    if (percent < 0.05) {
      return "<0.1%";
    }
    if (percent >= 99.95) {
      return ">99.9%";
    }
    return percent.toFixed(1) + "%";
  }

  /** A number as typed: 67 -> "67", 228.69 -> "228.69"; same rule as page.format_number. */
  function formatNumber(value) {
    return String(value);
  }

  /** An input value for display, like page.value_text. */
  function valueText(name, value) {
    var spec = config.fields[name];
    if (value === null || value === undefined) {
      return config.missingValueText;
    }
    if (!spec) {
      return String(value);
    }
    if (spec.kind === "numeric" && typeof value === "number") {
      return formatNumber(value) + " " + spec.unit;
    }
    if (spec.kind === "binary" && Object.prototype.hasOwnProperty.call(config.binaryLabels, String(value))) {
      return config.binaryLabels[String(value)];
    }
    if (spec.kind === "categorical" && Object.prototype.hasOwnProperty.call(spec.categories, value)) {
      return spec.categories[value];
    }
    return String(value);
  }

  function fieldLabel(name) {
    return config.fields[name] ? config.fields[name].label : name;
  }

  /** The /predict record of the form; same rules as page.record_from_form. */
  function recordFromForm() {
    var record = {};
    fieldNames.forEach(function (name) {
      var element = form.elements.namedItem(name);
      var text = element ? String(element.value).trim() : "";
      var kind = config.fields[name].kind;
      if (text === "") {
        record[name] = null;
      } else if (kind === "numeric" || kind === "binary") {
        var number = Number(text);
        record[name] = isFinite(number) ? number : text;
      } else {
        record[name] = text;
      }
    });
    return record;
  }

  // --- errors ---------------------------------------------------------------------------

  function setDescribedBy(input, name, withError) {
    var ids = [];
    if (byId(name + "-hint")) {
      ids.push(name + "-hint");
    }
    if (withError) {
      ids.push(name + "-error");
    }
    if (ids.length) {
      input.setAttribute("aria-describedby", ids.join(" "));
    } else {
      input.removeAttribute("aria-describedby");
    }
  }

  function clearErrors() {
    fieldNames.forEach(function (name) {
      var input = byId(name);
      var message = byId(name + "-error");
      if (!input || !message) {
        return;
      }
      input.removeAttribute("aria-invalid");
      setDescribedBy(input, name, false);
      message.textContent = "";
      message.hidden = true;
      input.closest(".field").classList.remove("field-invalid");
    });
    var summary = byId("form-errors");
    summary.hidden = true;
    byId("form-errors-list").textContent = "";
  }

  function showFieldError(name, text) {
    var input = byId(name);
    var message = byId(name + "-error");
    message.textContent = text;
    message.hidden = false;
    input.setAttribute("aria-invalid", "true");
    setDescribedBy(input, name, true);
    input.closest(".field").classList.add("field-invalid");
  }

  /** Show an API error: each field's message next to it, the rest in the summary. */
  function showErrors(status, body) {
    var list = byId("form-errors-list");
    var fieldErrors = [];
    var general = [];
    var details = body && Array.isArray(body.details) ? body.details : [];
    details.forEach(function (detail) {
      var name = detail && detail.field !== undefined ? String(detail.field) : "";
      var text = detail && detail.message !== undefined ? String(detail.message) : "";
      if (Object.prototype.hasOwnProperty.call(config.fields, name) && byId(name) &&
          fieldErrors.every(function (item) { return item.name !== name; })) {
        fieldErrors.push({ name: name, text: text });
      } else {
        general.push(name ? name + ": " + text : text);
      }
    });
    if (!fieldErrors.length && !general.length) {
      var error = body && body.error ? body.error : "no details";
      general.push("The service could not score this patient (HTTP " + status + ": " + error + ").");
    }
    fieldErrors.forEach(function (item) {
      showFieldError(item.name, item.text);
      var entry = document.createElement("li");
      var link = document.createElement("a");
      link.href = "#" + item.name;
      link.textContent = fieldLabel(item.name) + ": " + item.text;
      link.addEventListener("click", function (event) {
        event.preventDefault();
        byId(item.name).focus();
      });
      entry.appendChild(link);
      list.appendChild(entry);
    });
    general.forEach(function (text) {
      var entry = document.createElement("li");
      entry.textContent = text;
      list.appendChild(entry);
    });
    byId("form-errors-title").textContent = fieldErrors.length
      ? "Please correct the highlighted " + (fieldErrors.length === 1 ? "field" : "fields")
      : "The risk could not be estimated";
    var summary = byId("form-errors");
    summary.hidden = false;
    summary.focus();
  }

  // --- result ---------------------------------------------------------------------------

  function showPlaceholder(text) {
    byId("result-main").hidden = true;
    byId("result-details").hidden = true;
    var empty = byId("result-empty");
    if (text) {
      empty.textContent = text;
    }
    empty.hidden = false;
  }

  function figuresApply(threshold) {
    return config.evaluatedThreshold !== null &&
      Math.abs(config.evaluatedThreshold - threshold) <= config.thresholdTolerance;
  }

  function renderFactors(factors) {
    var section = byId("factors");
    var list = byId("factors-list");
    var template = byId("factor-template");
    list.textContent = "";
    (Array.isArray(factors) ? factors : []).forEach(function (factor) {
      if (!factor || typeof factor.contribution !== "number" || !isFinite(factor.contribution)) {
        return;
      }
      var direction = factor.contribution > 0 ? "raises" : factor.contribution < 0 ? "lowers" : "neutral";
      var item = template.content.firstElementChild.cloneNode(true);
      item.classList.add("factor-" + direction);
      item.querySelector(".factor-name").textContent = fieldLabel(String(factor.feature));
      item.querySelector(".factor-value").textContent = valueText(String(factor.feature), factor.value);
      item.querySelector(".factor-direction").textContent = config.directionText[direction];
      list.appendChild(item);
    });
    section.hidden = list.children.length === 0;
  }

  function showResult(body) {
    var decision = byId("decision");
    var positive = body.stroke_prediction === true;
    var key = positive ? "positive" : "negative";
    byId("risk-percent").textContent = formatPercent(body.stroke_probability);
    decision.textContent = config.decisionText[key].replace("{threshold}", formatPercent(body.threshold));
    decision.className = "decision decision-" + key;
    var applies = figuresApply(body.threshold);
    var info = byId("threshold-info");
    if (info) {
      info.hidden = !applies;
    }
    byId("threshold-unavailable").hidden = applies;
    renderFactors(body.risk_factors);
    byId("model-version").textContent = String(body.model_version || "");
    byId("prediction-id").textContent = String(body.prediction_id || "");
    byId("result-stale").hidden = true;
    byId("result-empty").hidden = true;
    byId("result-main").hidden = false;
    byId("result-details").hidden = false;
  }

  // --- events ---------------------------------------------------------------------------

  function setBusy(value) {
    busy = value;
    submitButton.disabled = value;
    submitButton.textContent = value ? "Estimating…" : submitLabel;
    byId("result-summary").setAttribute("aria-busy", value ? "true" : "false");
  }

  function onSubmit(event) {
    event.preventDefault();
    if (busy) {
      return;
    }
    clearErrors();
    setBusy(true);
    var controller = window.AbortController ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : null;
    window.fetch(config.predictUrl, {
      method: "POST",
      // The session cookie alone authorises nothing: the page proves itself with the
      // session's CSRF token (app/auth.py).
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRF-Token": config.csrfToken
      },
      body: JSON.stringify(recordFromForm()),
      credentials: "same-origin",
      signal: controller ? controller.signal : undefined
    })
      .then(function (response) {
        return response.json().then(
          function (body) { return { status: response.status, ok: response.ok, body: body }; },
          function () { return { status: response.status, ok: false, body: null }; }
        );
      })
      .then(function (answer) {
        if (answer.ok && answer.body && typeof answer.body.stroke_probability === "number") {
          showResult(answer.body);
        } else {
          showPlaceholder("No estimate: see the problems listed with the form.");
          showErrors(answer.status, answer.body);
        }
      })
      .catch(function () {
        showPlaceholder("No estimate: the prediction service did not answer.");
        showErrors(0, { error: "the prediction service could not be reached", details: [
          { field: "", message: "The prediction service could not be reached. Check the connection and try again." }
        ] });
      })
      .then(function () {
        if (timer !== null) {
          window.clearTimeout(timer);
        }
        setBusy(false);
      });
  }

  /** Clear every field (a plain reset would restore values the server rendered). */
  function onReset(event) {
    event.preventDefault();
    fieldNames.forEach(function (name) {
      var element = byId(name);
      if (element) {
        element.value = "";
      }
    });
    clearErrors();
    showPlaceholder("No estimate yet. Complete the form and select Estimate risk.");
  }

  function onChange() {
    if (!byId("result-details").hidden) {
      byId("result-stale").hidden = false;
    }
  }

  // Error summary links rendered by the server (no-JS path) move focus to their field.
  Array.prototype.forEach.call(document.querySelectorAll("#form-errors-list a"), function (link) {
    link.addEventListener("click", function (event) {
      var target = byId(link.getAttribute("href").slice(1));
      if (target) {
        event.preventDefault();
        target.focus();
      }
    });
  });
  form.addEventListener("submit", onSubmit);
  form.addEventListener("reset", onReset);
  form.addEventListener("input", onChange);
  form.addEventListener("change", onChange);
})();
