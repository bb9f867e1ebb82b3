// Live boards: /app/me/stream sends the boards (JSON) each time they change.
// Text goes in with textContent only: nothing the server sends is parsed as HTML.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var live = document.getElementById("live");
  var source = new EventSource("/app/me/stream");

  function row(entry) {
    var li = document.createElement("li");
    if (entry.me) li.className = "me";
    [["rank", String(entry.rank)], ["name", entry.name || "—"],
     ["points", entry.points.toLocaleString("en")]].forEach(function (cell) {
      var span = document.createElement("span");
      span.className = cell[0];
      span.textContent = cell[1];
      li.appendChild(span);
    });
    return li;
  }

  function render(board) {
    var article = document.querySelector('.board[data-board="' + CSS.escape(board.board) + '"]');
    if (!article) return;
    var rank = article.querySelector(".my-rank");
    var size = article.querySelector(".size");
    if (rank && board.rank !== null) {
      if (rank.textContent !== String(board.rank)) article.classList.add("moved");
      rank.textContent = String(board.rank);
    }
    if (size) size.textContent = String(board.size);
    var list = article.querySelector("ol.ranks");
    var fresh = document.createElement("ol");
    fresh.className = "ranks";
    board.entries.forEach(function (entry) { fresh.appendChild(row(entry)); });
    list.replaceWith(fresh);
  }

  source.addEventListener("boards", function (message) {
    JSON.parse(message.data).forEach(render);
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  });
  source.addEventListener("open", function () { if (live) live.hidden = false; });
  source.addEventListener("error", function () { if (live) live.hidden = true; });
  source.addEventListener("bye", function () { source.close(); if (live) live.hidden = true; });
})();
