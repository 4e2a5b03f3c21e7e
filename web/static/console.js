// jumpgate console: starts the asciinema player on a session page and wires
// the "jump to" buttons. Recording data is fetched by the player and drawn
// into its terminal grid as text; nothing here turns it into HTML.
(function () {
  'use strict';
  var el = document.getElementById('player');
  if (!el || !window.AsciinemaPlayer) {
    return;
  }
  var markers = [];
  try {
    var parsed = JSON.parse(el.dataset.markers || '[]');
    if (Array.isArray(parsed)) {
      markers = parsed.filter(function (m) {
        return Array.isArray(m) && typeof m[0] === 'number' && typeof m[1] === 'string';
      });
    }
  } catch (e) {
    markers = [];
  }
  var startAt = parseFloat(el.dataset.startAt || '0');
  if (!(startAt >= 0)) {
    startAt = 0;
  }
  var opts = {
    preload: true,
    fit: 'width',
    idleTimeLimit: 3,
    markers: markers,
    terminalFontSize: '14px'
  };
  if (startAt > 0) {
    opts.startAt = startAt;
    opts.poster = 'npt:' + startAt;
  }
  var player = window.AsciinemaPlayer.create({ url: el.dataset.src }, el, opts);
  el.jumpgatePlayer = player;
  var buttons = document.querySelectorAll('button.seek');
  Array.prototype.forEach.call(buttons, function (b) {
    b.addEventListener('click', function () {
      var t = parseFloat(b.dataset.seek);
      if (!(t >= 0)) {
        return;
      }
      el.scrollIntoView({ block: 'center' });
      player.seek(t);
    });
  });
})();
