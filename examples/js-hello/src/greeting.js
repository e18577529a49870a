export function greeting(word, name) {
  return `${word} from Nimbus${name ? `, ${name}` : ""}!\n`;
}
