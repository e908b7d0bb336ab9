import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { bestGrid } from '../src/layout.js';

describe('bestGrid', () => {
  it('puts one tile as large as the stage allows', () => {
    assert.deepEqual(bestGrid(1, 1600, 900, { gap: 0 }), { columns: 1, tileWidth: 1600, tileHeight: 900 });
    assert.equal(bestGrid(1, 1600, 450, { gap: 0 }).tileWidth, 800);
  });

  it('uses two rows for three or four tiles on a desktop stage, one column on a phone', () => {
    assert.equal(bestGrid(3, 1256, 640).columns, 2);
    assert.equal(bestGrid(4, 1256, 640).columns, 2);
    assert.equal(bestGrid(3, 362, 680).columns, 1);
    assert.equal(bestGrid(9, 1600, 900).columns, 3);
  });

  it('never returns tiles bigger than their cell', () => {
    for (const [n, w, h] of [[2, 1000, 300], [5, 800, 800], [12, 1920, 1000]]) {
      const g = bestGrid(n, w, h);
      const rows = Math.ceil(n / g.columns);
      assert.ok(g.tileWidth * g.columns + 10 * (g.columns - 1) <= w);
      assert.ok(g.tileHeight * rows + 10 * (rows - 1) <= h + 1);
    }
  });
});
