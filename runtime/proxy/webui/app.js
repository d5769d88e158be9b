// The proxy's browser UI: sign-up, login, the node list and the terminal, on the
// web API (runtime/proxy/web.ts, terminal.ts). No framework; text goes in with
// textContent only; the terminal is xterm.js (served from /web/xterm/).
// Every page names the product and the cluster (from ping) in its title and header.
'use strict';

(function () {
  var PRODUCT = 'Teleport';
  var TOKEN_KEY = 'teleport.token';
  var USER_KEY = 'teleport.user';

  function $(id) {
    return document.getElementById(id);
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function showError(message) {
    var el = $('error');
    el.textContent = message;
    el.hidden = false;
  }

  function clearError() {
    $('error').textContent = '';
    $('error').hidden = true;
  }

  /** Calls the web API; resolves the JSON answer or rejects with an Error carrying `status`. */
  function api(method, path, body, token) {
    var headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = {};
        try {
          data = text ? JSON.parse(text) : {};
        } catch (e) {
          data = {};
        }
        if (res.ok) return data;
        var err = new Error((data.error && data.error.message) || 'request failed with status ' + res.status);
        err.status = res.status;
        throw err;
      });
    });
  }

  function networkMessage(err) {
    return err.status ? err.message : 'cannot reach the proxy: ' + err.message;
  }

  function busy(button, on) {
    button.disabled = on;
  }

  // ---- security keys: navigator.credentials with the server's options (runtime/auth/webauthn.ts)
  function fromB64url(s) {
    var bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: fromB64url(c.id) });
    });
  }

  function keyFailed(err) {
    if (err && (err.name === 'NotAllowedError' || err.name === 'AbortError')) {
      throw new Error('The security key did not answer: it was not touched in time, or the request was cancelled. Try again.');
    }
    if (err && err.name === 'InvalidStateError') throw new Error('This security key is registered already.');
    throw err;
  }

  /** Registers a new key (navigator.credentials.create) with the server's options; resolves its answer as JSON. */
  function createKey(options) {
    var publicKey = Object.assign({}, options, {
      challenge: fromB64url(options.challenge),
      user: Object.assign({}, options.user, { id: fromB64url(options.user.id) }),
      excludeCredentials: withIds(options.excludeCredentials),
    });
    return navigator.credentials.create({ publicKey: publicKey }).then(function (cred) {
      return {
        id: cred.id,
        rawId: toB64url(cred.rawId),
        type: cred.type,
        response: {
          clientDataJSON: toB64url(cred.response.clientDataJSON),
          attestationObject: toB64url(cred.response.attestationObject),
          transports: cred.response.getTransports ? cred.response.getTransports() : [],
        },
        clientExtensionResults: cred.getClientExtensionResults(),
      };
    }, keyFailed);
  }

  /** Signs the server's challenge with a registered key (navigator.credentials.get); resolves its answer as JSON. */
  function useKey(options) {
    var publicKey = Object.assign({}, options, { challenge: fromB64url(options.challenge), allowCredentials: withIds(options.allowCredentials) });
    return navigator.credentials.get({ publicKey: publicKey }).then(function (cred) {
      var response = {
        clientDataJSON: toB64url(cred.response.clientDataJSON),
        authenticatorData: toB64url(cred.response.authenticatorData),
        signature: toB64url(cred.response.signature),
      };
      if (cred.response.userHandle) response.userHandle = toB64url(cred.response.userHandle);
      return { id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response: response, clientExtensionResults: cred.getClientExtensionResults() };
    }, keyFailed);
  }

  /** Whether the cluster's second_factor takes TOTP codes, and security keys. */
  function takesOtp(mode) {
    return mode === 'otp' || mode === 'on' || mode === 'optional';
  }
  function takesKeys(mode) {
    return mode === 'webauthn' || mode === 'on' || mode === 'optional';
  }

  /** Hides a form field and its label. */
  function hideField(id) {
    show(id, false);
    document.querySelector('label[for="' + id + '"]').hidden = true;
  }

  /** Puts the cluster's name in the header and the title ("Log in · <cluster> · Teleport"); resolves ping's answer. */
  function showCluster() {
    var ping = api('GET', '/webapi/ping');
    ping.then(
      function (ping) {
        if (!ping.cluster_name) return;
        $('cluster').textContent = ping.cluster_name;
        show('cluster-name', true);
        document.title = [document.body.dataset.title, ping.cluster_name, PRODUCT].join(' · ');
      },
      function () {
        // the page's own requests report an unreachable proxy
      },
    );
    return ping;
  }

  // ---- sign-up: /web/newuser/<token>
  var SIGNUP_LINK_GONE =
    'This sign-up link is invalid, has expired or has been used already. ' +
    'Ask your administrator for a new one: they run "tctl users reset <your user name>" and send you the link it prints.';
  function signupPage() {
    var m = /^\/web\/newuser\/([^/]+)\/?$/.exec(location.pathname);
    var token = m ? m[1] : '';
    var secondFactor = 'off';
    api('GET', '/webapi/signuptokens/' + encodeURIComponent(token)).then(
      function (info) {
        show('loading', false);
        secondFactor = info.second_factor;
        $('user').textContent = info.user;
        if (info.otp_secret) {
          $('qr').src = info.qr_code;
          $('otp-secret').textContent = info.otp_secret;
        }
        // With on or optional the user chooses: an authenticator app, a security key (or, optional, neither).
        if (takesOtp(secondFactor) && takesKeys(secondFactor)) {
          show('factor-choice', true);
          show('factor-none-choice', secondFactor === 'optional');
        } else {
          $('factor-' + (takesKeys(secondFactor) ? 'webauthn' : 'otp')).checked = true;
        }
        showFactor();
        show('signup', true);
        $('password').focus();
      },
      function (err) {
        show('loading', false);
        showError(
          err.status === 404
            ? SIGNUP_LINK_GONE
            : networkMessage(err),
        );
      },
    );
    /** The second factor chosen: otp, webauthn, none (or off). */
    function factor() {
      if (secondFactor === 'off') return 'off';
      var checked = document.querySelector('input[name="factor"]:checked');
      return checked ? checked.value : 'otp';
    }
    function showFactor() {
      show('otp-setup', factor() === 'otp');
      show('otp-field', factor() === 'otp');
      show('key-setup', factor() === 'webauthn');
    }
    document.querySelectorAll('input[name="factor"]').forEach(function (el) {
      el.addEventListener('change', showFactor);
    });
    $('signup-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      clearError();
      var password = $('password').value;
      var otp = $('otp').value.trim();
      if (password.length < 6) return showError('The password must be at least 6 characters long.');
      if (password !== $('password-confirm').value) return showError('The passwords do not match.');
      if (factor() === 'otp' && !/^\d{6}$/.test(otp)) return showError('Enter the 6-digit code from your authenticator app.');
      var body = { password: password };
      if (factor() === 'otp') body.otp_token = otp;
      busy($('submit'), true);
      var signup = encodeURIComponent(token);
      var ready =
        factor() === 'webauthn'
          ? api('POST', '/webapi/signuptokens/' + signup + '/webauthn', {})
              .then(function (res) {
                return createKey(res.publicKey);
              })
              .then(function (registration) {
                body.webauthn_registration = registration;
                return body;
              })
          : Promise.resolve(body);
      ready.then(function () {
        return api('POST', '/webapi/signuptokens/' + signup, body);
      }).then(
        function () {
          show('signup', false);
          show('success', true);
          $('login-link').focus();
        },
        function (err) {
          busy($('submit'), false);
          showError(
            err.status === 404
              ? SIGNUP_LINK_GONE
              : networkMessage(err),
          );
        },
      );
    });
  }

  /** After a login: the bearer token for this tab, then the first cluster's nodes. */
  function loggedIn(session) {
    sessionStorage.setItem(TOKEN_KEY, session.token);
    sessionStorage.setItem(USER_KEY, session.user);
    return api('GET', '/webapi/sites', undefined, session.token).then(function (sites) {
      var site = sites.items && sites.items[0];
      location.assign(site ? '/web/cluster/' + encodeURIComponent(site.name) + '/nodes' : '/web');
    });
  }

  /**
   * Single sign-on: a button per connector (to the proxy, which sends the browser to the identity
   * provider); back from it (`?sso=1`), the session's bearer token is fetched once; a refused login
   * comes back with `?sso_error=<reason>`.
   */
  function ssoLogin() {
    var params = new URLSearchParams(location.search);
    // A reload must not try the one-time hand-off again.
    if (params.has('sso') || params.has('sso_error')) history.replaceState(null, '', '/web/login');
    if (params.get('sso_error')) showError('Single sign-on failed: ' + params.get('sso_error'));
    if (params.get('sso') === '1') {
      api('POST', '/webapi/sessions/sso', {}).then(loggedIn, function (err) {
        showError(networkMessage(err));
      });
    }
    api('GET', '/webapi/connectors').then(
      function (res) {
        (res.items || []).forEach(function (c) {
          var li = document.createElement('li');
          var a = document.createElement('a');
          a.href = '/v1/webapi/' + encodeURIComponent(c.kind) + '/login/web?connector_id=' + encodeURIComponent(c.name);
          a.textContent = c.display;
          a.className = 'connector';
          li.appendChild(a);
          $('connectors').appendChild(li);
        });
        show('sso', (res.items || []).length > 0);
      },
      function () {
        // no connectors to show: the password form stays
      },
    );
  }

  // ---- login: /web/login
  function loginPage(ping) {
    ssoLogin();
    var secondFactor = 'otp';
    ping.then(function (p) {
      secondFactor = (p.auth && p.auth.second_factor) || 'otp';
      if (!takesOtp(secondFactor)) hideField('otp');
      // webauthn: the one button uses the key; on and optional: a second button does.
      if (secondFactor === 'webauthn') $('login').textContent = 'Log in with a security key';
      else show('login-key', takesKeys(secondFactor));
    }, function () {});
    /** Logs in with the password and a code, or (withKey) with the password and a security key. */
    function logIn(withKey) {
      clearError();
      var user = $('username').value.trim();
      var pass = $('password').value;
      var otp = $('otp').value.trim();
      if (!user || !pass) return showError('Enter your user name and password.');
      var body = { user: user, pass: pass };
      if (otp && !withKey) body.second_factor_token = otp;
      busy($('login'), true);
      busy($('login-key'), true);
      var ready = withKey
        ? api('POST', '/webapi/mfa/login/begin', { user: user, pass: pass })
            .then(function (res) {
              return useKey(res.publicKey);
            })
            .then(function (assertion) {
              body.webauthn_response = assertion;
            })
        : Promise.resolve();
      ready
        .then(function () {
          return api('POST', '/webapi/sessions', body);
        })
        .then(loggedIn)
        .then(
          function () {},
          function (err) {
            busy($('login'), false);
            busy($('login-key'), false);
            $('password').value = '';
            $('otp').value = '';
            showError(networkMessage(err));
          },
        );
    }
    $('login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      logIn(secondFactor === 'webauthn');
    });
    $('login-key').addEventListener('click', function () {
      logIn(true);
    });
  }

  // ---- tsh login's security key: /web/cli-mfa/<request id> (runtime/client/securitykey.ts)
  function cliMfaPage() {
    var m = /^\/web\/cli-mfa\/([0-9a-f]{32})\/?$/.exec(location.pathname);
    var base = '/webapi/mfa/cli/' + (m ? m[1] : '');
    api('POST', base + '/challenge', {}).then(
      function (req) {
        show('loading', false);
        $('user').textContent = req.user;
        $('from').textContent = req.from;
        show('ask', true);
        $('use-key').addEventListener('click', function () {
          clearError();
          busy($('use-key'), true);
          useKey(req.publicKey)
            .then(function (assertion) {
              return api('POST', base + '/answer', { webauthn_response: assertion });
            })
            .then(
              function () {
                show('ask', false);
                show('done', true);
              },
              function (err) {
                busy($('use-key'), false);
                showError(err.status ? err.message : err.message || String(err));
              },
            );
        });
      },
      function (err) {
        show('loading', false);
        showError(networkMessage(err));
      },
    );
  }

  // ---- nodes: /web and /web/cluster/<site>/nodes
  function toLogin() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    location.assign('/web/login');
  }

  function sessionFailed(err) {
    show('loading', false);
    if (err.status === 401 || err.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      showError('Your session has expired or was ended. Log in again.');
      show('logout', false);
      var link = document.createElement('a');
      link.href = '/web/login';
      link.id = 'relogin';
      link.textContent = 'Log in';
      $('error').appendChild(document.createTextNode(' '));
      $('error').appendChild(link);
    } else {
      showError(networkMessage(err));
    }
  }

  /** A list page's table (or its "none" line) in place of "Loading…". */
  function showList(table, count) {
    show('loading', false);
    show(table, count > 0);
    show('empty', count === 0);
  }

  /**
   * A link that opens a terminal page in a new tab. The tab keeps its opener, so it gets a copy of
   * this tab's sessionStorage (the bearer token); same origin only.
   */
  function terminalLink(href, text, title) {
    var a = document.createElement('a');
    a.className = 'connect';
    a.href = href;
    a.target = '_blank';
    a.rel = 'opener';
    a.textContent = text;
    a.title = title;
    return a;
  }

  function renderNodes(items) {
    var tbody = $('nodes').querySelector('tbody');
    tbody.textContent = '';
    items.forEach(function (n) {
      var tr = document.createElement('tr');
      tr.dataset.id = n.id;
      var host = document.createElement('td');
      host.className = 'hostname';
      host.textContent = n.hostname;
      var addr = document.createElement('td');
      addr.className = 'addr';
      addr.textContent = n.addr;
      var labels = document.createElement('td');
      labels.className = 'labels';
      (n.tags || []).forEach(function (t) {
        var span = document.createElement('span');
        span.className = 'label';
        span.textContent = t.name + ': ' + t.value;
        labels.appendChild(span);
      });
      var logins = document.createElement('td');
      logins.className = 'logins';
      (n.logins || []).forEach(function (login) {
        var row = document.createElement('div');
        row.className = 'login-row';
        var open = terminalLink(
          '/web/cluster/' + encodeURIComponent(n.siteId) + '/console/node/' + encodeURIComponent(n.id) + '/' + encodeURIComponent(login),
          login,
          'Open a terminal on ' + n.hostname + ' as ' + login + ' in a new tab',
        );
        var code = document.createElement('code');
        code.className = 'login';
        code.textContent = 'tsh ssh ' + login + '@' + n.hostname;
        row.appendChild(open);
        row.appendChild(code);
        logins.appendChild(row);
      });
      if (!logins.firstChild) logins.textContent = 'no login allowed';
      tr.appendChild(host);
      tr.appendChild(addr);
      tr.appendChild(labels);
      tr.appendChild(logins);
      tbody.appendChild(tr);
    });
    showList('nodes', items.length);
  }

  /**
   * The header of a logged-in page: links to the cluster's pages and the user menu (who, their
   * roles, account, logout). Resolves the user's context (user, roles, the cluster's second factor).
   */
  function loggedInHeader(token, site) {
    $('whoami').textContent = sessionStorage.getItem(USER_KEY) || '';
    var button = $('user-menu-button');
    function openMenu(open) {
      button.setAttribute('aria-expanded', String(open));
      show('user-menu', open);
    }
    button.addEventListener('click', function () {
      openMenu($('user-menu').hidden);
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && !$('user-menu').hidden) {
        openMenu(false);
        button.focus();
      }
    });
    document.addEventListener('click', function (ev) {
      if (!button.parentNode.contains(ev.target)) openMenu(false);
    });
    $('logout').addEventListener('click', function () {
      busy($('logout'), true);
      api('DELETE', '/webapi/sessions/current', undefined, token).then(toLogin, function (err) {
        if (err.status === 401 || err.status === 403) return toLogin();
        busy($('logout'), false);
        showError(networkMessage(err));
      });
    });
    site.then(function (name) {
      var base = '/web/cluster/' + encodeURIComponent(name);
      $('nodes-link').href = base + '/nodes';
      $('sessions-link').href = base + '/sessions';
    }, function () {});
    var context = api('GET', '/webapi/user/context', undefined, token);
    context.then(function (ctx) {
      $('whoami').textContent = ctx.user;
      $('menu-user').textContent = ctx.user;
      $('roles').textContent = ctx.roles.length ? ctx.roles.join(', ') : 'none';
    }, function () {});
    return context;
  }

  /** The cluster of a /web/cluster/<site>/<page> URL, or the proxy's own (and, with `page`, the URL then says it). */
  function siteOf(token, page) {
    var m = /^\/web\/cluster\/([^/]+)\//.exec(location.pathname);
    if (m) return Promise.resolve(decodeURIComponent(m[1]));
    return api('GET', '/webapi/sites', undefined, token).then(function (sites) {
      var name = sites.items[0].name;
      if (page) history.replaceState(null, '', '/web/cluster/' + encodeURIComponent(name) + '/' + page);
      return name;
    });
  }

  function nodesPage() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return toLogin();
    var site = siteOf(token, 'nodes');
    loggedInHeader(token, site);
    site
      .then(function (name) {
        return api('GET', '/webapi/sites/' + encodeURIComponent(name) + '/nodes', undefined, token);
      })
      .then(function (res) {
        renderNodes(res.items || []);
      }, sessionFailed);
  }

  // ---- active sessions: /web/cluster/<site>/sessions, refreshed every few seconds
  var SESSIONS_REFRESH_MS = 3000;

  /**
   * Redraws the list when it changed since the last refresh (so that a screen reader's place in it
   * holds), and keeps the keyboard focus on the link it was on in the same session's row.
   */
  var shownSessions;
  function renderSessions(site, sessions) {
    var json = JSON.stringify(sessions);
    if (json === shownSessions) return;
    shownSessions = json;
    var tbody = $('sessions').querySelector('tbody');
    var focused = tbody.contains(document.activeElement) && document.activeElement.closest('tr[data-sid]');
    var refocus = focused && { sid: focused.dataset.sid, className: document.activeElement.className };
    tbody.textContent = '';
    sessions.forEach(function (s) {
      var tr = document.createElement('tr');
      tr.dataset.sid = s.id;
      var cells = [s.server_hostname, s.login, s.parties.map(function (p) { return p.user; }).join(', '), new Date(s.created).toLocaleString()];
      cells.forEach(function (text, i) {
        var td = document.createElement('td');
        td.className = ['node', 'login', 'users', 'started'][i];
        td.textContent = text;
        tr.appendChild(td);
      });
      var join = document.createElement('td');
      join.className = 'join';
      if (s.joinable) {
        join.appendChild(
          terminalLink(
            '/web/cluster/' + encodeURIComponent(site) + '/console/node/' + encodeURIComponent(s.server_id) + '/' + encodeURIComponent(s.login) + '?sid=' + encodeURIComponent(s.id),
            'Join',
            'Join the session of ' + s.login + '@' + s.server_hostname + ' in a new tab',
          ),
        );
      } else {
        join.textContent = 'login not allowed';
      }
      var code = document.createElement('code');
      code.textContent = 'tsh join ' + s.id;
      join.appendChild(document.createTextNode(' '));
      join.appendChild(code);
      tr.appendChild(join);
      tbody.appendChild(tr);
      if (refocus && refocus.sid === s.id) {
        var again = tr.getElementsByClassName(refocus.className)[0];
        if (again) again.focus();
      }
    });
    showList('sessions', sessions.length);
  }

  function sessionsPage() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return toLogin();
    var site = siteOf(token, 'sessions');
    loggedInHeader(token, site);
    site.then(function (name) {
      var refresh = function () {
        api('GET', '/webapi/sites/' + encodeURIComponent(name) + '/sessions', undefined, token).then(
          function (res) {
            clearError();
            renderSessions(name, res.sessions || []);
            setTimeout(refresh, SESSIONS_REFRESH_MS);
          },
          function (err) {
            if (err.status === 401 || err.status === 403) return sessionFailed(err);
            showError(networkMessage(err));
            setTimeout(refresh, SESSIONS_REFRESH_MS);
          },
        );
      };
      refresh();
    }, sessionFailed);
  }

  // ---- terminal: /web/cluster/<site>/console/node/<node uuid>/<login>
  var TERMINAL_PROTOCOL = 'teleport.terminal.v1';
  var CLOSE_SESSION_ENDED = 4001;

  /**
   * xterm.js writes its computed styles into <style> elements it creates; the
   * page's CSP admits only those carrying the nonce this response put in
   * <meta name="csp-nonce">, so each new <style> element gets it.
   */
  function styleElementsWithNonce() {
    var meta = document.querySelector('meta[name="csp-nonce"]');
    var nonce = meta && meta.content;
    if (!nonce) return;
    var create = Document.prototype.createElement;
    Document.prototype.createElement = function (name) {
      var el = create.apply(this, arguments);
      if (String(name).toLowerCase() === 'style') el.nonce = nonce;
      return el;
    };
  }

  function terminalPage() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return toLogin();
    var m = /^\/web\/cluster\/([^/]+)\/console\/node\/([^/]+)\/([^/]+)\/?$/.exec(location.pathname);
    var site = decodeURIComponent(m[1]);
    var server = decodeURIComponent(m[2]);
    var login = decodeURIComponent(m[3]);
    var sid = new URLSearchParams(location.search).get('sid');
    $('target').textContent = login + '@' + server;
    var status = function (text) {
      $('status').textContent = text;
    };
    // The node's name for the header (the URL has its UUID).
    api('GET', '/webapi/sites/' + encodeURIComponent(site) + '/nodes', undefined, token).then(function (res) {
      (res.items || []).forEach(function (n) {
        if (n.id !== server) return;
        $('target').textContent = login + '@' + n.hostname;
        document.body.dataset.title = login + '@' + n.hostname;
        document.title = [login + '@' + n.hostname, site, PRODUCT].join(' · ');
      });
    }, function () {});

    styleElementsWithNonce();
    var term = new Terminal({ cursorBlink: true, scrollback: 5000, fontFamily: 'ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace' });
    var fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($('terminal'));
    fit.fit();

    var params = { server_id: server, login: login, term: { w: term.cols, h: term.rows } };
    if (sid) params.sid = sid;
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/webapi/sites/' + encodeURIComponent(site) +
      '/connect?params=' + encodeURIComponent(JSON.stringify(params));
    var ws = new WebSocket(url, [TERMINAL_PROTOCOL, 'bearer.' + token]);
    ws.binaryType = 'arraybuffer';
    var encoder = new TextEncoder();
    var send = function (data) {
      if (ws.readyState === WebSocket.OPEN) ws.send(data);
    };
    var opened = false;
    ws.onopen = function () {
      opened = true;
      status('Connected');
      term.focus();
    };
    ws.onmessage = function (ev) {
      if (typeof ev.data !== 'string') return term.write(new Uint8Array(ev.data));
      var msg = {};
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        msg = {};
      }
      if (msg.type === 'error') showError(msg.message);
    };
    ws.onclose = function (ev) {
      term.options.disableStdin = true;
      term.options.cursorBlink = false;
      if (ev.code === CLOSE_SESSION_ENDED) {
        showError('Your web session has expired or was ended. Log in again.');
        status('Disconnected');
      } else if (ev.code === 1000) {
        status('Session ended' + (ev.reason ? ' (' + ev.reason + ')' : ''));
      } else {
        status('Disconnected' + (ev.reason ? ': ' + ev.reason : ''));
        if (!$('error').hidden || ev.code === 1008 || ev.code === 1011) return;
        if (opened) return showError('The connection to the proxy was lost.');
        // Refused before it opened (the browser does not say why): an ended session is the likely reason.
        api('GET', '/webapi/sites', undefined, token).then(
          function () {
            showError('The proxy refused this terminal.');
          },
          function (err) {
            showError(err.status === 401 || err.status === 403 ? 'Your web session has expired or was ended. Log in again.' : networkMessage(err));
          },
        );
      }
    };
    term.onData(function (d) {
      send(encoder.encode(d));
    });
    term.onBinary(function (d) {
      var bytes = new Uint8Array(d.length);
      for (var i = 0; i < d.length; i++) bytes[i] = d.charCodeAt(i) & 0xff;
      send(bytes);
    });
    term.onResize(function (size) {
      send(JSON.stringify({ type: 'resize', cols: size.cols, rows: size.rows }));
    });
    window.addEventListener('resize', function () {
      fit.fit();
    });
  }

  // ---- account: /web/account
  function accountPage() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return toLogin();
    var context = loggedInHeader(token, siteOf(token, null));

    var secondFactor = 'otp';
    /** Whether the user has a security key (then account changes ask for it when no code is typed). */
    var hasKey = false;

    /**
     * Sends a form's request (`body` may be a promise: a security key's answer first; or `run`, a
     * promise of several requests); on success runs `done` with the answer and says `message`.
     */
    function submit(form, button, request, done, message) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        clearError();
        show('done', false);
        var req = request();
        if (typeof req === 'string') return showError(req);
        busy(button, true);
        var sent = req.run
          ? req.run()
          : Promise.resolve(req.body).then(function (body) {
              return api(req.method, req.path, body, token);
            });
        sent.then(
          function (res) {
            busy(button, false);
            form.reset();
            done(res);
            $('done').textContent = message;
            show('done', true);
          },
          function (err) {
            busy(button, false);
            form.querySelectorAll('[autocomplete="one-time-code"]').forEach(function (el) {
              el.value = '';
            });
            if (err.status === 401) return sessionFailed(err);
            showError(networkMessage(err));
          },
        );
      });
    }
    /** The second factor: a code, if one was typed; else the user's security key, if they have one. Resolves the body. */
    function withCode(body, id) {
      var code = $(id).value.trim();
      if (code) body.second_factor_token = code;
      if (code || !hasKey || !takesKeys(secondFactor)) return Promise.resolve(body);
      return api('POST', '/webapi/mfa/authenticatechallenge', {}, token)
        .then(function (res) {
          return useKey(res.publicKey);
        })
        .then(function (assertion) {
          body.webauthn_response = assertion;
          return body;
        });
    }

    submit(
      $('password-form'),
      $('change'),
      function () {
        var body = { old_password: $('old-password').value, new_password: $('new-password').value };
        if (!body.old_password || !body.new_password) return 'Enter your current and your new password.';
        if (body.new_password !== $('confirm-password').value) return 'The new passwords do not match.';
        return { method: 'PUT', path: '/webapi/users/password', body: withCode(body, 'otp') };
      },
      function () {},
      'Your password has been changed. Use it from your next login.',
    );

    function listDevices() {
      return api('GET', '/webapi/mfa/devices', undefined, token).then(function (res) {
        var tbody = $('devices');
        tbody.textContent = '';
        hasKey = res.items.some(function (d) {
          return d.type === 'WebAuthn';
        });
        res.items.forEach(function (d) {
          var tr = document.createElement('tr');
          tr.dataset.type = d.type;
          [d.name, d.type === 'WebAuthn' ? 'Security key' : 'Authenticator app', new Date(d.added_at).toLocaleString(), new Date(d.last_used).toLocaleString()].forEach(function (text) {
            var td = document.createElement('td');
            td.textContent = text;
            tr.appendChild(td);
          });
          var td = document.createElement('td');
          var remove = document.createElement('button');
          remove.type = 'button';
          remove.className = 'secondary';
          remove.textContent = 'Remove';
          remove.setAttribute('aria-label', 'Remove ' + d.name);
          remove.addEventListener('click', function () {
            $('remove-name').textContent = d.name;
            show('remove-form', true);
            $('remove-password').focus();
          });
          td.appendChild(remove);
          tr.appendChild(td);
          tbody.appendChild(tr);
        });
      });
    }

    context.then(function (ctx) {
      secondFactor = ctx.second_factor;
      if (!takesOtp(secondFactor)) {
        ['otp', 'offer-otp', 'remove-otp', 'key-otp'].forEach(hideField);
        show('offer-form', false);
      }
      if (secondFactor === 'off') return;
      show('key-form', takesKeys(secondFactor));
      show('devices-section', true);
      listDevices().catch(function (err) {
        showError(networkMessage(err));
      });
    }, function (err) {
      if (err.status === 401) return sessionFailed(err);
    });

    submit(
      $('offer-form'),
      $('offer'),
      function () {
        var body = { password: $('offer-password').value };
        if (!body.password) return 'Enter your current password.';
        return { method: 'POST', path: '/webapi/mfa/offer', body: withCode(body, 'offer-otp') };
      },
      function (offer) {
        $('new-qr').src = offer.qr_code;
        $('new-secret').textContent = offer.otp_secret;
        show('offer-form', false);
        show('add-form', true);
        $('device-name').focus();
      },
      'Scan the code with the new device, then name it and enter a code from it within 5 minutes.',
    );
    submit(
      $('add-form'),
      $('add'),
      function () {
        var body = { name: $('device-name').value.trim(), second_factor_token: $('new-otp').value.trim() };
        if (!body.name) return 'Name the new device.';
        if (!/^\d{6}$/.test(body.second_factor_token)) return 'Enter the 6-digit code the new device shows.';
        return { method: 'POST', path: '/webapi/mfa/devices', body: body };
      },
      function () {
        show('add-form', false);
        show('offer-form', true);
        listDevices();
      },
      'The device has been added: its codes log you in from now on.',
    );
    submit(
      $('remove-form'),
      $('remove'),
      function () {
        var body = { password: $('remove-password').value };
        if (!body.password) return 'Enter your current password.';
        return { method: 'DELETE', path: '/webapi/mfa/devices/' + encodeURIComponent($('remove-name').textContent), body: withCode(body, 'remove-otp') };
      },
      function () {
        show('remove-form', false);
        listDevices();
      },
      'The device has been removed: its codes no longer log you in.',
    );
    submit(
      $('key-form'),
      $('add-key'),
      function () {
        var name = $('key-name').value.trim();
        var body = { password: $('key-password').value };
        if (!name) return 'Name the new security key.';
        if (!body.password) return 'Enter your current password.';
        return {
          run: function () {
            return withCode(body, 'key-otp')
              .then(function (b) {
                return api('POST', '/webapi/mfa/offer/webauthn', b, token);
              })
              .then(function (res) {
                return createKey(res.publicKey);
              })
              .then(function (registration) {
                return api('POST', '/webapi/mfa/devices', { name: name, webauthn_registration: registration }, token);
              });
          },
        };
      },
      function () {
        listDevices();
      },
      'The security key has been added: it logs you in from now on.',
    );
    $('remove-cancel').addEventListener('click', function () {
      $('remove-form').reset();
      show('remove-form', false);
    });
  }

  // ---- player: /web/cluster/<site>/session/<sid>
  var EVENTS_PAGE = 1000;

  /** Every event of a recording, page after page. */
  function fetchEvents(base, token, after, into) {
    return api('GET', base + '/events?after=' + after + '&limit=' + EVENTS_PAGE, undefined, token).then(function (res) {
      var page = res.events || [];
      page.forEach(function (e) {
        into.push(e);
      });
      if (page.length < EVENTS_PAGE) return into;
      return fetchEvents(base, token, Number(page[page.length - 1].ei) + 1, into);
    });
  }

  /** A recording's bytes, chunk after chunk until an empty one. */
  function fetchBytes(base, token, offset, chunks) {
    return fetch(base + '/stream?offset=' + offset, { headers: { Authorization: 'Bearer ' + token }, credentials: 'same-origin' }).then(function (res) {
      if (!res.ok) {
        var err = new Error('HTTP ' + res.status);
        err.status = res.status;
        throw err;
      }
      return res.arrayBuffer().then(function (buf) {
        if (buf.byteLength === 0) return chunks;
        chunks.push(new Uint8Array(buf));
        return fetchBytes(base, token, offset + buf.byteLength, chunks);
      });
    });
  }

  function clock(ms) {
    var s = Math.floor(ms / 1000);
    return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
  }

  function playerPage() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return toLogin();
    var m = /^\/web\/cluster\/([^/]+)\/session\/([0-9a-f-]{36})\/?$/.exec(location.pathname);
    var site = decodeURIComponent(m[1]);
    var sid = m[2];
    var base = '/webapi/sites/' + encodeURIComponent(site) + '/sessions/' + sid;
    var status = function (text) {
      $('status').textContent = text;
    };
    $('target').textContent = 'Session ' + sid;
    styleElementsWithNonce();
    Promise.all([fetchEvents(base, token, 0, []), fetchBytes(base, token, 0, [])]).then(
      function (got) {
        var events = got[0];
        var size = got[1].reduce(function (n, c) { return n + c.length; }, 0);
        var bytes = new Uint8Array(size);
        got[1].reduce(function (at, c) { bytes.set(c, at); return at + c.length; }, 0);
        var start = events.find(function (e) { return e.event === 'session.start'; }) || {};
        if (start.login && start.server_hostname) {
          $('target').textContent = start.login + '@' + start.server_hostname;
          document.title = ['Recording of ' + start.login + '@' + start.server_hostname, site, PRODUCT].join(' · ');
        }
        // What the terminal shows, in order: print events (bytes at a time) and resizes.
        var steps = events
          .filter(function (e) { return e.event === 'print' || e.event === 'resize' || e.event === 'session.start'; })
          .sort(function (a, b) { return Number(a.ei) - Number(b.ei); })
          .map(function (e) {
            var wh = String(e.size || '').split(':');
            return e.event === 'print'
              ? { ms: Number(e.ms) || 0, data: bytes.subarray(Number(e.offset), Number(e.offset) + Number(e.bytes)) }
              : { ms: Number(e.ms) || 0, cols: Number(wh[0]) || 0, rows: Number(wh[1]) || 0 };
          });
        var duration = steps.length ? steps[steps.length - 1].ms : 0;
        var first = steps.find(function (st) { return st.cols; });
        var term = new Terminal({ disableStdin: true, cursorBlink: false, scrollback: 5000, cols: (first && first.cols) || 80, rows: (first && first.rows) || 24, fontFamily: 'ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace' });
        term.open($('terminal'));
        var next = 0;
        var pos = 0;
        var playing = false;
        var timer;
        var apply = function (st) {
          if (st.data) term.write(st.data);
          else if (st.cols > 0 && st.rows > 0) term.resize(st.cols, st.rows);
        };
        var show = function () {
          $('seek').value = String(Math.round(pos));
          $('time').textContent = clock(pos) + ' / ' + clock(duration);
        };
        var pause = function (why) {
          playing = false;
          clearTimeout(timer);
          $('play').textContent = 'Play';
          status(why);
        };
        var tick = function () {
          if (!playing) return;
          while (next < steps.length && steps[next].ms <= pos) apply(steps[next++]);
          show();
          if (next >= steps.length) return pause('Finished');
          var speed = Number($('speed').value) || 1;
          var wait = Math.min((steps[next].ms - pos) / speed, 1000);
          var startedAt = Date.now();
          timer = setTimeout(function () {
            pos = Math.min(pos + (Date.now() - startedAt) * speed, steps[next].ms);
            tick();
          }, wait);
        };
        /** Shows the terminal as it was at `t` ms. */
        var seek = function (t) {
          term.reset();
          next = 0;
          pos = t;
          while (next < steps.length && steps[next].ms <= t) apply(steps[next++]);
          show();
        };
        $('seek').max = String(duration);
        $('seek').disabled = false;
        $('play').disabled = false;
        $('play').addEventListener('click', function () {
          if (playing) return pause('Paused');
          if (next >= steps.length) seek(0);
          playing = true;
          $('play').textContent = 'Pause';
          status('Playing');
          tick();
        });
        $('seek').addEventListener('input', function () {
          seek(Number($('seek').value));
          if (playing) {
            clearTimeout(timer);
            tick();
          }
        });
        show();
        status('Ready');
      },
      function (err) {
        if (err.status === 401 || err.status === 403) return sessionFailed(err);
        status('Not available');
        showError(err.status === 404 ? 'No recording of session ' + sid + ' that you may see.' : networkMessage(err));
      },
    );
  }

  // What a page with a script of its own (audit.js) builds on.
  window.TeleportUi = {
    TOKEN_KEY: TOKEN_KEY,
    $: $,
    show: show,
    showError: showError,
    clearError: clearError,
    api: api,
    networkMessage: networkMessage,
    busy: busy,
    toLogin: toLogin,
    sessionFailed: sessionFailed,
    showList: showList,
    loggedInHeader: loggedInHeader,
    siteOf: siteOf,
    showCluster: showCluster,
    createKey: createKey,
    useKey: useKey,
  };

  var pages = { climfa: cliMfaPage, newuser: signupPage, login: loginPage, account: accountPage, nodes: nodesPage, sessions: sessionsPage, terminal: terminalPage, player: playerPage };
  var page = pages[document.body.dataset.page];
  if (page) page(showCluster());
})();
