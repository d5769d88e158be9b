// The audit log page (/web/audit): the events of a time range, filtered by type and user, from
// GET /webapi/sites/<site>/events/search, oldest first, a page at a time ("Load more"). Each row
// expands to the event's JSON. Events hold strings users chose (user names, commands): they go
// into the page with textContent only, never as HTML. Builds on app.js (window.TeleportUi).
'use strict';

(function () {
  var ui = window.TeleportUi;
  if (!ui || document.body.dataset.page !== 'audit') return;
  var $ = ui.$;
  var PAGE = 100;
  var TYPES = [
    'user.login', 'user.logout', 'user.create', 'user.update', 'user.delete', 'user.password_change',
    'session.start', 'session.join', 'session.leave', 'session.end', 'session.upload', 'resize',
    'exec', 'subsystem', 'scp', 'port', 'client.disconnect', 'auth',
    'reset_password_token.create', 'role.created', 'role.deleted', 'instance.join', 'audit.rejected',
  ];

  function text(v) {
    return v === undefined || v === null ? '' : String(v);
  }

  /** One line about an event, from its well-known fields. */
  function summary(e) {
    var on = e.server_hostname ? ' on ' + e.server_hostname : '';
    var failed = e.success === false || e.success === 'false';
    switch (e.event) {
      case 'user.login':
        return failed ? 'failed login' + (e.error ? ': ' + e.error : '') : 'logged in (' + text(e.method || 'local') + ')';
      case 'user.logout':
        return 'logged out';
      case 'user.password_change':
        return (e.method === 'signup' ? 'set the password of ' : 'changed the password of ') + text(e.name) + (failed ? ' (failed' + (e.error ? ': ' + e.error : '') + ')' : '');
      case 'user.create':
      case 'user.update':
      case 'user.delete':
        return e.event.slice(5) + 'd user ' + text(e.name) + (e.roles ? ' (roles ' + [].concat(e.roles).join(', ') + ')' : '');
      case 'session.start':
        return 'started a session as ' + text(e.login) + on;
      case 'session.join':
        return 'joined session ' + text(e.sid) + on;
      case 'session.leave':
        return 'left session ' + text(e.sid) + on;
      case 'session.end':
        return 'session ' + text(e.sid) + ' ended' + on + (e.participants ? ' (' + [].concat(e.participants).join(', ') + ')' : '');
      case 'exec':
        return 'ran ' + JSON.stringify(text(e.command)) + (e.login ? ' as ' + e.login : '') + on;
      case 'auth':
        return 'authentication failed' + (e.error ? ': ' + e.error : '');
      default: {
        var parts = [];
        ['name', 'login', 'sid', 'command', 'path', 'addr', 'error'].forEach(function (k) {
          if (e[k] !== undefined && e[k] !== '') parts.push(k + ' ' + text(e[k]));
        });
        return parts.join(', ') + on;
      }
    }
  }

  /** A `datetime-local` value (local time) as a Date; undefined when empty or not a time. */
  function localTime(value) {
    if (!value) return undefined;
    var d = new Date(value);
    return isNaN(d.getTime()) ? undefined : d;
  }

  /** `Date` as a `datetime-local` value in local time, to the second. */
  function localValue(d) {
    var pad = function (n) {
      return String(n).padStart(2, '0');
    };
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function auditPage() {
    var token = sessionStorage.getItem(ui.TOKEN_KEY);
    if (!token) return ui.toLogin();
    var site = ui.siteOf(token, null);
    ui.loggedInHeader(token, site);
    TYPES.forEach(function (t) {
      var opt = document.createElement('option');
      opt.value = t;
      opt.textContent = t;
      $('event-type').appendChild(opt);
    });
    var now = new Date();
    $('to').value = localValue(now);
    $('from').value = localValue(new Date(now.getTime() - 86400000));
    $('range').addEventListener('change', function () {
      ui.show('custom-range', $('range').value === 'custom');
    });

    /** The search being shown: its filters and end, the events shown so far (by uid) and the time of the last one. */
    var current = null;
    var rows = 0;

    function row(e) {
      var tbody = $('events').querySelector('tbody');
      var id = 'event-' + rows++;
      var tr = document.createElement('tr');
      tr.className = 'event';
      tr.dataset.event = text(e.event);
      var time = document.createElement('td');
      time.className = 'time';
      var toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.className = 'expand';
      toggle.textContent = new Date(e.time).toLocaleString();
      toggle.title = 'Show the event as JSON';
      toggle.setAttribute('aria-expanded', 'false');
      toggle.setAttribute('aria-controls', id);
      time.appendChild(toggle);
      tr.appendChild(time);
      [['type event-type', e.event], ['user', e.user], ['summary', summary(e)]].forEach(function (c) {
        var td = document.createElement('td');
        td.className = c[0];
        td.textContent = text(c[1]);
        tr.appendChild(td);
      });
      var details = document.createElement('tr');
      details.className = 'details';
      details.id = id;
      details.hidden = true;
      var cell = document.createElement('td');
      cell.colSpan = 4;
      var pre = document.createElement('pre');
      pre.textContent = JSON.stringify(e, null, 2);
      cell.appendChild(pre);
      details.appendChild(cell);
      toggle.addEventListener('click', function () {
        var open = details.hidden;
        details.hidden = !open;
        toggle.setAttribute('aria-expanded', String(open));
      });
      tbody.appendChild(tr);
      tbody.appendChild(details);
    }

    function failed(err) {
      ui.show('loading', false);
      ui.busy($('search'), false);
      ui.busy($('more'), false);
      if (err.status === 401) return ui.sessionFailed(err);
      if (err.status !== 403) return ui.showError(ui.networkMessage(err));
      // 403: an ended session, or roles that do not allow reading the audit log (the message says which).
      ui.api('GET', '/webapi/sites', undefined, token).then(
        function () {
          ui.showError(err.message);
        },
        ui.sessionFailed,
      );
    }

    /** Asks for the next page of `current` (from the last event shown on; the ones already shown are skipped). */
    function fetchPage(name) {
      var q = new URLSearchParams();
      q.set('from', current.from.toISOString());
      q.set('to', current.to.toISOString());
      if (current.type) q.append('event', current.type);
      if (current.user) q.set('user', current.user);
      // Events of the last second shown come again: ask for that many more, so a page always brings new ones.
      var limit = PAGE + current.atFrom;
      q.set('limit', String(limit));
      return ui.api('GET', '/webapi/sites/' + encodeURIComponent(name) + '/events/search?' + q.toString(), undefined, token).then(function (res) {
        var events = res.events || [];
        events.forEach(function (e) {
          if (current.seen[e.uid]) return;
          current.seen[e.uid] = true;
          current.count++;
          row(e);
          var t = new Date(e.time);
          if (t.getTime() !== current.from.getTime()) {
            current.from = t;
            current.atFrom = 0;
          }
          current.atFrom++;
        });
        ui.show('loading', false);
        ui.showList('events', current.count);
        ui.show('more', events.length === limit);
        $('count').textContent = current.count + (current.count === 1 ? ' event' : ' events') + (events.length === limit ? ' so far' : '');
      });
    }

    function search(name) {
      ui.clearError();
      var from;
      var to;
      if ($('range').value === 'custom') {
        from = localTime($('from').value);
        to = localTime($('to').value);
        if (!from || !to) return ui.showError('Enter the start and the end of the range.');
        if (from > to) return ui.showError('The start of the range is after its end.');
      } else {
        to = new Date();
        from = new Date(to.getTime() - Number($('range').value));
      }
      current = { from: from, to: to, type: $('event-type').value, user: $('user').value.trim(), seen: {}, count: 0, atFrom: 0 };
      $('events').querySelector('tbody').textContent = '';
      $('count').textContent = '';
      ui.show('events', false);
      ui.show('empty', false);
      ui.show('more', false);
      ui.show('loading', true);
      ui.busy($('search'), true);
      fetchPage(name).then(function () {
        ui.busy($('search'), false);
      }, failed);
    }

    site.then(function (name) {
      $('audit-form').addEventListener('submit', function (ev) {
        ev.preventDefault();
        search(name);
      });
      $('more').addEventListener('click', function () {
        ui.busy($('more'), true);
        fetchPage(name).then(function () {
          ui.busy($('more'), false);
        }, failed);
      });
      search(name);
    }, ui.sessionFailed);
  }

  ui.showCluster();
  auditPage();
})();
