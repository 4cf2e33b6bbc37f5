// The dashboard's two charts, drawn by uPlot (served from node_modules as /vendor/uplot.js).
// Each chart is made once and given new data with setData; its box's data-points attribute says
// how many points it holds (what a reader or a test can check without reading the canvas).
/* global uPlot, ResizeObserver */
'use strict'

// eslint-disable-next-line no-unused-vars
const LayerswarmCharts = (() => {
  const width = el => Math.max(280, el.clientWidth - 8)

  function lineChart (el, opts) {
    const plot = new uPlot({
      width: width(el),
      height: 240,
      scales: { x: { time: opts.time } },
      axes: [{ label: opts.xLabel }, { label: opts.yLabel, size: 60 }],
      legend: { live: true },
      series: [{ label: opts.xLabel }, ...opts.series]
    }, [[], ...opts.series.map(() => [])], el)
    new ResizeObserver(() => { plot.setSize({ width: width(el), height: 240 }) }).observe(el)
    return plot
  }

  /** Training loss (a line) and held-out loss (points) against the optimizer step. */
  function lossChart (el) {
    const plot = lineChart(el, {
      time: false,
      xLabel: 'step',
      yLabel: 'loss',
      series: [
        { label: 'loss', stroke: '#2563eb', width: 1.5, spanGaps: true, points: { show: false } },
        { label: 'held-out loss', stroke: '#dc2626', width: 0, spanGaps: true, points: { show: true, size: 7, fill: '#dc2626' } }
      ]
    })
    return {
      update (loss, evals) {
        // one x axis for both: uPlot.join aligns the two curves' steps (null where one has no point)
        const data = uPlot.join([loss, evals])
        plot.setData(data)
        el.dataset.points = String(loss[0].length)
        el.dataset.evalPoints = String(evals[0].length)
      }
    }
  }

  /** Tokens/s against wall-clock time. */
  function rateChart (el) {
    const plot = lineChart(el, {
      time: true,
      xLabel: 'time',
      yLabel: 'tokens/s',
      series: [{ label: 'tokens/s', stroke: '#059669', width: 1.5, fill: 'rgba(5,150,105,0.08)', points: { show: false } }]
    })
    return {
      update (series) {
        plot.setData(series)
        el.dataset.points = String(series[0].length)
      }
    }
  }

  return { lossChart, rateChart }
})()
