// Passkey buttons: the only script on our pages, because WebAuthn needs one. Elements with
// data-passkey-action="authenticate|register" fetch options, run the ceremony, post the result
// and follow the server's redirect. Conditional UI (autofill) runs on inputs marked with
// autocomplete="… webauthn" when the page has a [data-passkey-autofill] element.
(function () {
  'use strict';
  var lib = window.SimpleWebAuthnBrowser;
  if (!lib || !lib.browserSupportsWebAuthn()) {
    document.querySelectorAll('[data-passkey-action]').forEach(function (el) { el.hidden = true; });
    return;
  }

  function showError(message) {
    var box = document.querySelector('[data-passkey-error]');
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body || {}),
    }).then(function (res) {
      // Sent elsewhere first (re-authentication for a stale sign-in, or signing in again): go
      // there instead of reading that page as JSON.
      if (res.redirected) {
        window.location.assign(res.url);
        return new Promise(function () {});
      }
      return res.json().then(function (data) {
        if (!res.ok) throw new Error(data.error_description || 'Something went wrong. Try again.');
        return data;
      });
    });
  }

  function run(el, autofill) {
    var action = el.getAttribute('data-passkey-action');
    var csrf = el.getAttribute('data-csrf');
    var verifyUrl = el.getAttribute('data-verify-url');
    return post(el.getAttribute('data-options-url'), csrf)
      .then(function (options) {
        if (action === 'register') return lib.startRegistration({ optionsJSON: options });
        return lib.startAuthentication({ optionsJSON: options, useBrowserAutofill: Boolean(autofill) });
      })
      .then(function (response) {
        if (action === 'register') {
          var nameInput = document.querySelector('[data-passkey-name]');
          return post(verifyUrl, csrf, { response: response, name: nameInput ? nameInput.value : 'Passkey' });
        }
        return post(verifyUrl, csrf, response);
      })
      .then(function (result) {
        window.location.assign(result.redirect || window.location.href);
      })
      .catch(function (err) {
        if (err && err.name === 'AbortError') return;
        showError(err && err.name === 'NotAllowedError' ? 'The passkey request was cancelled or timed out.' : (err && err.message) || 'Passkey failed.');
      });
  }

  document.querySelectorAll('[data-passkey-action]').forEach(function (el) {
    el.addEventListener('click', function () { run(el, false); });
  });

  var autofill = document.querySelector('[data-passkey-autofill]');
  if (autofill && lib.browserSupportsWebAuthnAutofill) {
    lib.browserSupportsWebAuthnAutofill().then(function (supported) {
      if (supported) run(autofill, true);
    });
  }
})();
