// Tile grid: how many columns make the tiles biggest in the space the stage has. Pure.

/**
 * @param {number} count tiles to place
 * @param {number} width stage width (px)
 * @param {number} height stage height (px)
 * @param {{aspect?: number, gap?: number}} options aspect: tile width / height
 * @returns {{columns: number, tileWidth: number, tileHeight: number}}
 */
export function bestGrid(count, width, height, { aspect = 16 / 9, gap = 10 } = {}) {
  const n = Math.max(1, count);
  let best = { columns: 1, tileWidth: 0, tileHeight: 0 };
  for (let columns = 1; columns <= n; columns++) {
    const rows = Math.ceil(n / columns);
    const cellWidth = (width - gap * (columns - 1)) / columns;
    const cellHeight = (height - gap * (rows - 1)) / rows;
    if (cellWidth <= 0 || cellHeight <= 0) continue;
    const tileWidth = Math.min(cellWidth, cellHeight * aspect);
    if (tileWidth > best.tileWidth) best = { columns, tileWidth: Math.floor(tileWidth), tileHeight: Math.floor(tileWidth / aspect) };
  }
  return best;
}
