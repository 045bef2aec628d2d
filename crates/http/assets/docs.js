// Renders /api/v1/openapi.json as a list of operations, grouped by tag. No external libraries.
(function () {
  "use strict";
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { e.append(c); });
    return e;
  }
  function refName(schema) {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.type === "array" && schema.items) return "[" + refName(schema.items) + "]";
    return schema.type || "object";
  }
  function render(api) {
    document.getElementById("desc").textContent = api.info.title + " " + api.info.version + " — " + (api.info.description || "");
    var groups = {};
    Object.keys(api.paths).forEach(function (path) {
      Object.keys(api.paths[path]).forEach(function (method) {
        var op = api.paths[path][method];
        var tag = (op.tags && op.tags[0]) || "other";
        (groups[tag] = groups[tag] || []).push({ path: path, method: method, op: op });
      });
    });
    var root = document.getElementById("ops");
    (api.tags || []).map(function (t) { return t.name; }).concat(Object.keys(groups)).forEach(function (tag, i, all) {
      if (!groups[tag] || all.indexOf(tag) !== i) return;
      var tagInfo = (api.tags || []).filter(function (t) { return t.name === tag; })[0];
      root.append(el("h2", {}, [tagInfo && tagInfo.description ? tagInfo.description : tag]));
      groups[tag].forEach(function (o) {
        var body = el("div", { class: "body" }, []);
        if (o.op.description) body.append(el("p", {}, [o.op.description]));
        var params = o.op.parameters || [];
        if (params.length) {
          var t = el("table", {}, [el("tr", {}, [el("th", {}, ["参数 parameter"]), el("th", {}, ["位置 in"]), el("th", {}, ["说明 description"])])]);
          params.forEach(function (p) {
            t.append(el("tr", {}, [el("td", {}, [el("code", {}, [p.name])]), el("td", {}, [p.in]), el("td", {}, [p.description || ""])]));
          });
          body.append(t);
        }
        var rb = o.op.requestBody && o.op.requestBody.content && o.op.requestBody.content["application/json"];
        if (rb) body.append(el("p", {}, ["请求体 request body: ", el("code", {}, [refName(rb.schema)])]));
        var rs = el("table", {}, [el("tr", {}, [el("th", {}, ["状态 status"]), el("th", {}, ["内容 body"])])]);
        Object.keys(o.op.responses || {}).forEach(function (code) {
          var r = o.op.responses[code];
          var c = r.content && (r.content["application/json"] || r.content["application/geo+json"]);
          rs.append(el("tr", {}, [el("td", {}, [code]), el("td", {}, [c ? el("code", {}, [refName(c.schema)]) : (r.description || "")])]));
        });
        body.append(rs);
        var summary = el("summary", {}, [
          el("span", { class: "m " + o.method }, [o.method]),
          el("span", { class: "p" }, [o.path]),
          el("span", { class: "s" }, [o.op.summary || ""]),
        ]);
        root.append(el("details", { class: "op" }, [summary, body]));
      });
    });
    var schemas = (api.components && api.components.schemas) || {};
    root.append(el("h2", {}, ["数据结构 schemas"]));
    Object.keys(schemas).sort().forEach(function (name) {
      root.append(el("details", { class: "op" }, [
        el("summary", {}, [el("span", { class: "p" }, [name])]),
        el("div", { class: "body" }, [el("pre", {}, [JSON.stringify(schemas[name], null, 2)])]),
      ]));
    });
  }
  fetch("/api/v1/openapi.json").then(function (r) { return r.json(); }).then(render).catch(function (e) {
    document.getElementById("desc").textContent = "无法加载接口描述 could not load the API description: " + e;
  });
})();
