// examples/events.ts: events like `ip monitor`, and a mirror of every link that never misses one.
// Run it as root in a throwaway netns: `node scripts/sandbox.mjs node dist/examples/events.js`.
import { Rtnl, monitor, watch } from 'tsnetlink';

const m = monitor({ groups: ['link', 'addr', 'route'] });    // ip monitor link address route
m.on('link', (e) => console.log(e.type, e.object.name));
m.on('resync', () => console.log('events were lost: dump again'));
const rt = Rtnl.open();
try {
  rt.linkAdd('ifb7', 'ifb');
  rt.linkDel('ifb7');
  await new Promise((r) => setTimeout(r, 100));
} finally {
  await m.close();
}

try {
  for await (const e of watch('link')) {                     // a mirror of every link
    if (e.type === 'sync') console.log(e.objects.size, 'links');
    else console.log(e.type, e.object.name);
    break;
  }
} finally {
  rt.close();
}
