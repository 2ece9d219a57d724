// Two fixes that let ipywidgets' html-manager run inside the book's theme.
//
// 1. Font Awesome: the theme's Font Awesome script replaces every <i class="fa ..."> with an <svg>.
//    The Play widget keeps a handle on its <i> icons and breaks when they vanish (and with it the
//    linked slider and frames). In "nest" mode Font Awesome puts the <svg> inside the <i> instead.
window.FontAwesomeConfig = Object.assign({}, window.FontAwesomeConfig, { autoReplaceSvg: "nest" });

// 2. MathJax: the html-manager typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue);
//    the book loads MathJax 3, which has no Hub, so every labelled widget view would throw.
//    Whatever object ends up in window.MathJax (Sphinx's config, then MathJax 3 itself) gets a Hub
//    that forwards to MathJax 3.
(function () {
  function addHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          var api = window.MathJax;
          if (api && api.typesetPromise) {
            api.typesetPromise(element ? [element] : undefined).catch(function () {});
          }
        },
      };
    }
    return mj;
  }
  var current = addHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = addHub(value); },
  });
})();
