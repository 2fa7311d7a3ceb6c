/**
 * Prints `PLATFORM<TAB>ROOTFS_DIR` for each platform of the busybox base image made from
 * Debian's busybox-static debs (downloaded by scripts/setup.sh), building the rootfs dirs
 * once. scripts/demo.sh imports them with `polyarch import`, since this machine has no
 * Docker Hub: the same way a user with no registry access makes a first base image.
 *
 *   node dist/scripts/busybox-rootfs.js
 */
import { ensureBusyboxLayout, platformString } from '../test/env/busybox.js';

const layout = await ensureBusyboxLayout();
for (const img of layout.images) process.stdout.write(`${platformString(img.platform)}\t${img.rootfsDir}\n`);
